//! Batches of image samples as tensors, decoded in parallel and prefetched.
//!
//! [`BatchLoader`] decodes the next batch on a background thread (rayon inside it) while
//! the current one is being used, so the device never waits for PNG decoding.
//!
//! Images become the square model input as a [`Geometry`] says: resized to `resize x
//! resize` (`[data] resize_shape = "square"`, the default) or with the shorter side at
//! `resize` (`"shorter_side"`, torchvision's `Resize(int)`), then centre-cropped
//! ([`LoadOptions::geometry`]) at torchvision's offsets.
//!
//! With a cache folder ([`BatchLoader::with_cache`], [`load_batch_with_cache`]) every image
//! file (and mask) is decoded and resized once: the `[3, S, S]` (mask `[1, S, S]`) u8 pixels
//! (square: before the crop; shorter side: after it) are written to `<cache>/<hash>.px`
//! under a key of the source path, its size and mtime, the target size (with the shorter
//! side: the resize shape and the crop too) and the resize filter, and read back in later
//! epochs. Entries are written atomically (temporary file + rename) and checked on read
//! (key, shape, length, checksum); a stale, short or corrupt entry is decoded again and
//! rewritten. Nothing is held in memory beyond the batches in flight. In-memory samples
//! (`Sample::pixels`) are never cached.
use crate::arrays::ArrayRef;
use crate::error::{DataError, Result};
use crate::image_io::{load_mask_fitted, load_rgb_fitted, Geometry, MaskResize, ResizeShape};
use crate::mask::MaskRef;
use crate::mvtec::Sample;
use crate::synthesis::AnomalySynthesizer;
use image::{Rgb, RgbImage};
use memad_core::{Batch, SyntheticAnomalies};
use rayon::prelude::*;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use tch::{Device, Kind, Tensor};

/// A decoded batch in host memory.
#[derive(Debug)]
pub struct HostBatch {
    /// Indices into the sample list the loader was given.
    pub indices: Vec<usize>,
    /// `[B, 3 * T, S, S]` row-major, RGB in `[0, 1]`; `T` frames per sample in time order
    /// for clips (`Sample::frames`), else `T = 1`.
    pub images: Vec<f32>,
    /// `3 * T`.
    pub channels: i64,
    /// `[B, 1, S, S]` {0, 1}, when masks were asked for.
    pub masks: Option<Vec<f32>>,
    pub labels: Vec<i64>,
    pub size: i64,
    /// `[B]`: the class of each sample, when the loader was given classes.
    pub classes: Option<Vec<i64>>,
    /// `([B, 3, S, S], [B, 1, S, S])`: the images with synthesized anomalies and their masks,
    /// when the loader was asked for them.
    pub synthetic: Option<(Vec<f32>, Vec<f32>)>,
}

/// How a [`BatchLoader`] brings images to the input, and what it delivers besides images and
/// labels.
#[derive(Clone)]
pub struct LoadOptions {
    /// How images (and masks) of any size become the `S x S` input, `S = geometry.side()`:
    /// resized with `geometry.resize` as its shape says, then centre-cropped (the "resize
    /// 256, centre-crop 224" protocol of PatchCore), or resized straight to `S x S`.
    pub geometry: Geometry,
    /// Decode ground-truth masks (test sets; normal samples get all-zero masks).
    pub with_masks: bool,
    /// How the masks are resized and binarised.
    pub mask_resize: MaskResize,
    /// The class of each sample, indexed like the sample list; empty: no classes.
    pub classes: Vec<i64>,
    /// Synthesize an anomalous copy of every image ([`Batch::synthetic`]) with this
    /// synthesizer; the seed of sample `i` is derived from `(seed, i)`, so a given epoch seed
    /// gives the same anomalies in any batch order.
    pub synthesis: Option<(Arc<dyn AnomalySynthesizer>, u64)>,
}

impl LoadOptions {
    /// Images brought to the input as `geometry` says, nothing else: no masks, classes or
    /// synthesis.
    pub fn new(geometry: Geometry) -> Self {
        LoadOptions {
            geometry,
            with_masks: false,
            mask_resize: MaskResize::default(),
            classes: Vec::new(),
            synthesis: None,
        }
    }
}

impl HostBatch {
    /// Moves the batch to `device` as the [`Batch`] methods consume.
    pub fn to_batch(&self, device: Device) -> Batch {
        let b = self.indices.len() as i64;
        let s = self.size;
        let input = Tensor::from_slice(&self.images)
            .reshape([b, self.channels, s, s])
            .to_device(device);
        let mask = self.masks.as_ref().map(|m| {
            Tensor::from_slice(m)
                .reshape([b, 1, s, s])
                .to_device(device)
        });
        let label = Tensor::from_slice(&self.labels)
            .to_kind(Kind::Int64)
            .to_device(device);
        let class = self
            .classes
            .as_ref()
            .map(|c| Tensor::from_slice(c).to_device(device));
        let synthetic = self
            .synthetic
            .as_ref()
            .map(|(images, masks)| SyntheticAnomalies {
                input: Tensor::from_slice(images)
                    .reshape([b, self.channels, s, s])
                    .to_device(device),
                mask: Tensor::from_slice(masks)
                    .reshape([b, 1, s, s])
                    .to_device(device),
            });
        Batch {
            input,
            label,
            mask,
            class,
            synthetic,
        }
    }
}

/// Appends `rgb` as `[3, H, W]` in `[0, 1]`.
fn push_chw(rgb: &RgbImage, chw: &mut Vec<f32>) {
    let plane = (rgb.width() * rgb.height()) as usize;
    let start = chw.len();
    chw.resize(start + 3 * plane, 0.0);
    for (p, px) in rgb.pixels().enumerate() {
        for c in 0..3 {
            chw[start + c * plane + p] = px[c] as f32 / 255.0;
        }
    }
}

/// An in-memory image brought to the input as `geometry` says, as `[3, S, S]` RGB in
/// `[0, 1]` (grey images repeated over the three channels; resized as files are, with
/// `geometry.filter`),
/// appended to `chw`.
fn array_chw(pixels: &ArrayRef, geometry: &Geometry, chw: &mut Vec<f32>) -> Result<()> {
    let a = &pixels.array;
    let bytes = pixels.bytes();
    let plane = a.height * a.width;
    let rgb = RgbImage::from_fn(a.width as u32, a.height as u32, |x, y| {
        let at =
            |c: usize| bytes[c.min(a.channels - 1) * plane + y as usize * a.width + x as usize];
        Rgb([at(0), at(1), at(2)])
    });
    push_chw(&geometry.fit_rgb(rgb)?, chw);
    Ok(())
}

/// Decodes `samples[indices]` at `size`x`size` (masks too when `with_masks`, resized
/// nearest-neighbour; normal samples get an all-zero mask). Clip samples are stacked
/// channel-wise, frames in time order; the samples of one batch must have clips of one
/// length.
pub fn decode_batch(
    samples: &[Sample],
    indices: &[usize],
    size: u32,
    with_masks: bool,
) -> Result<HostBatch> {
    let masks = with_masks.then_some(MaskResize::Nearest);
    decode_batch_with_cache(samples, indices, size, masks, None)
}

/// [`decode_batch`] with masks resized as `mask_resize` says (none when `None`), reading and
/// filling the on-disk cache folder `cache` (created when missing); the result is
/// bit-for-bit the uncached one.
pub fn decode_batch_with_cache(
    samples: &[Sample],
    indices: &[usize],
    size: u32,
    mask_resize: Option<MaskResize>,
    cache: Option<&Path>,
) -> Result<HostBatch> {
    decode_batch_fitted(
        samples,
        indices,
        &Geometry::square(size),
        mask_resize,
        cache,
    )
}

/// [`decode_batch_with_cache`] of images (and masks) brought to the input as `geometry`
/// says: `[B, 3 * T, S, S]` with `S = geometry.side()`.
pub fn decode_batch_fitted(
    samples: &[Sample],
    indices: &[usize],
    geometry: &Geometry,
    mask_resize: Option<MaskResize>,
    cache: Option<&Path>,
) -> Result<HostBatch> {
    geometry.check()?;
    if let Some(dir) = cache {
        fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    let size = geometry.side();
    let decoded: Vec<(Vec<f32>, Option<Vec<f32>>)> = indices
        .par_iter()
        .map(|&i| {
            let sample = &samples[i];
            let plane = (size * size) as usize;
            let mut chw = Vec::new();
            if let Some(pixels) = &sample.pixels {
                array_chw(pixels, geometry, &mut chw)?;
            } else if sample.frames.is_empty() {
                image_chw(&sample.image, geometry, cache, &mut chw)?;
            } else {
                for frame in &sample.frames {
                    image_chw(frame, geometry, cache, &mut chw)?;
                }
            }
            let mask = match (mask_resize, &sample.mask) {
                (None, _) => None,
                (Some(resize), Some(mask_ref)) => {
                    let m = mask_pixels(mask_ref, &sample.image, geometry, resize, cache)?;
                    Some(m.iter().map(|&p| if p > 127 { 1.0 } else { 0.0 }).collect())
                }
                (Some(_), None) => Some(vec![0f32; plane]),
            };
            Ok((chw, mask))
        })
        .collect::<Result<_>>()?;
    let labels = indices
        .iter()
        .map(|&i| samples[i].label.is_anomalous() as i64)
        .collect();
    let plane = (size * size) as usize;
    let channels = decoded.first().map_or(3, |d| d.0.len() / plane);
    if let Some(&i) = indices
        .iter()
        .zip(&decoded)
        .find(|(_, d)| d.0.len() != channels * plane)
        .map(|(i, _)| i)
    {
        return Err(DataError::InvalidArgument(format!(
            "{}: its clip has {} frames, others in the batch {}",
            samples[i].image.display(),
            samples[i].frames.len(),
            channels / 3
        )));
    }
    let mut images = Vec::with_capacity(decoded.iter().map(|d| d.0.len()).sum());
    let mut masks = mask_resize.map(|_| Vec::new());
    for (img, mask) in decoded {
        images.extend_from_slice(&img);
        if let (Some(all), Some(m)) = (masks.as_mut(), mask) {
            all.extend_from_slice(&m);
        }
    }
    Ok(HostBatch {
        indices: indices.to_vec(),
        images,
        masks,
        labels,
        channels: channels as i64,
        size: size as i64,
        classes: None,
        synthetic: None,
    })
}

/// [`decode_batch`] as `opts` says (geometry, masks), plus what else it asks for (classes,
/// synthesized anomalies).
pub fn load_batch(samples: &[Sample], indices: &[usize], opts: &LoadOptions) -> Result<HostBatch> {
    load_batch_with_cache(samples, indices, opts, None)
}

/// [`load_batch`] with the decoded, resized images read from (and written to) the cache
/// folder `cache` ([`decode_batch_with_cache`]); synthesis still runs every time.
pub fn load_batch_with_cache(
    samples: &[Sample],
    indices: &[usize],
    opts: &LoadOptions,
    cache: Option<&Path>,
) -> Result<HostBatch> {
    let masks = opts.with_masks.then_some(opts.mask_resize);
    let mut host = decode_batch_fitted(samples, indices, &opts.geometry, masks, cache)?;
    if !opts.classes.is_empty() {
        host.classes = Some(indices.iter().map(|&i| opts.classes[i]).collect());
    }
    if let Some((synthesizer, seed)) = &opts.synthesis {
        host.synthetic = Some(synthesize_batch(&host, synthesizer.as_ref(), *seed)?);
    }
    Ok(host)
}

/// What the decode (and the cache entry) of an image or mask holds for `geometry`: with a
/// square resize the uncropped `resize x resize` (shared by every crop, cropped after:
/// [`crop_stored`]), with a shorter-side one the cropped input itself.
fn stored(geometry: &Geometry) -> Geometry {
    match geometry.shape {
        ResizeShape::Square => Geometry {
            crop: None,
            ..*geometry
        },
        ResizeShape::ShorterSide => *geometry,
    }
}

/// `planes` as [`stored`] holds them brought to `geometry`: the central `crop x crop` of
/// every `S x S` plane (`S = geometry.resize`) of a square entry, at `round((S - crop) / 2)`
/// as torchvision's `CenterCrop`; `planes` itself when they are the input already.
fn crop_stored(planes: Vec<u8>, geometry: &Geometry) -> Result<Vec<u8>> {
    let (s, c) = (stored(geometry).side() as usize, geometry.side() as usize);
    if c == s {
        return Ok(planes);
    }
    let off = geometry.crop_offsets((s as u32, s as u32))?.0 as usize;
    Ok(planes
        .chunks(s * s)
        .flat_map(|plane| {
            (off..off + c).flat_map(move |y| plane[y * s + off..y * s + off + c].iter().copied())
        })
        .collect())
}

/// What the cache keys hold of `geometry` ([`stored`]): the decode size (square: the entry
/// is the uncropped square, shared by every crop, keyed as before the shorter-side mode
/// existed), or the shape, size and crop of a shorter-side entry (already cropped).
fn geometry_key(geometry: &Geometry) -> String {
    match geometry.shape {
        ResizeShape::Square => geometry.resize.to_string(),
        ResizeShape::ShorterSide => {
            format!("shorter_side {} crop {}", geometry.resize, geometry.side())
        }
    }
}

/// Pastes a synthesized anomaly into a copy of every image of `host` (RGB still images
/// only): `([B, 3, S, S], [B, 1, S, S])`.
fn synthesize_batch(
    host: &HostBatch,
    synthesizer: &dyn AnomalySynthesizer,
    seed: u64,
) -> Result<(Vec<f32>, Vec<f32>)> {
    if host.channels != 3 {
        return Err(DataError::InvalidArgument(format!(
            "anomaly synthesis needs RGB still images, got {} channels (video clips?)",
            host.channels
        )));
    }
    let s = host.size as u32;
    let plane = (s * s) as usize;
    let done: Vec<(Vec<f32>, Vec<f32>)> = host
        .indices
        .par_iter()
        .enumerate()
        .map(|(k, &index)| {
            let chw = &host.images[k * 3 * plane..(k + 1) * 3 * plane];
            let rgb = RgbImage::from_fn(s, s, |x, y| {
                let p = (y * s + x) as usize;
                let at = |c: usize| (chw[c * plane + p] * 255.0).round().clamp(0.0, 255.0) as u8;
                Rgb([at(0), at(1), at(2)])
            });
            let out = synthesizer.synthesize(&rgb, sample_seed(seed, index))?;
            let mut image = Vec::with_capacity(3 * plane);
            push_chw(&out.image, &mut image);
            let mask = out
                .mask
                .pixels()
                .map(|m| (m[0] > 127) as u8 as f32)
                .collect();
            Ok((image, mask))
        })
        .collect::<Result<_>>()?;
    let (images, masks): (Vec<Vec<f32>>, Vec<Vec<f32>>) = done.into_iter().unzip();
    Ok((images.concat(), masks.concat()))
}

/// Appends the image file `path` brought to the input as `geometry` says, as `[3, S, S]` in
/// `[0, 1]`, through the cache folder when there is one.
fn image_chw(
    path: &Path,
    geometry: &Geometry,
    cache: Option<&Path>,
    chw: &mut Vec<f32>,
) -> Result<()> {
    let stored = stored(geometry);
    let size = stored.side();
    let build = || -> Result<Vec<u8>> {
        let rgb = load_rgb_fitted(path, &stored)?;
        let plane = (size * size) as usize;
        let mut out = vec![0u8; 3 * plane];
        for (p, px) in rgb.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + p] = px[c];
            }
        }
        Ok(out)
    };
    let pixels = match cache {
        None => build()?,
        Some(dir) => {
            let size_key = geometry_key(&stored);
            let filter = stored.filter.cache_name();
            let key = stamp(path).map(|s| format!("rgb\n{s}\n{size_key}\n{filter}"));
            cached(dir, key, 3 * (size * size) as usize, build)?
        }
    };
    let pixels = crop_stored(pixels, geometry)?;
    chw.extend(pixels.iter().map(|&v| v as f32 / 255.0));
    Ok(())
}

/// The mask `mask` of `image` brought to the input as `geometry` says (resized as `resize`
/// says, cropped as the image) as 0/255 u8, through the cache folder when there is one (the
/// key covers the mask's files and the image, whose size it is checked against).
fn mask_pixels(
    mask: &MaskRef,
    image: &Path,
    geometry: &Geometry,
    resize: MaskResize,
    cache: Option<&Path>,
) -> Result<Vec<u8>> {
    let stored = stored(geometry);
    let size = stored.side();
    let build = || Ok(load_mask_fitted(mask, image, &stored, resize)?.into_raw());
    let pixels = match cache {
        None => build()?,
        Some(dir) => {
            let (files, index): (Vec<&Path>, Option<usize>) = match mask {
                MaskRef::File(p) => (vec![p.as_path()], None),
                MaskRef::Union(files) => (files.iter().map(PathBuf::as_path).collect(), None),
                MaskRef::NpyFrame { path, index } | MaskRef::MatFrame { path, index, .. } => {
                    (vec![path.as_path()], Some(*index))
                }
            };
            let size_key = geometry_key(&stored);
            let key = files
                .iter()
                .chain([&image])
                .map(|p| stamp(p))
                .collect::<Option<Vec<_>>>()
                .map(|stamps| {
                    let stamps = stamps.join("\n");
                    format!("mask\n{stamps}\n{index:?}\n{size_key}\n{resize:?}")
                });
            cached(dir, key, (size * size) as usize, build)?
        }
    };
    crop_stored(pixels, geometry)
}

/// `path` (absolute), its length and mtime (ns) as one line, and on Unix its inode and ctime
/// (a file replaced by one of the same size with its mtime kept, as `rsync -a` or `cp -p`
/// do, has a new inode or ctime: no one can set those); `None` when the file's metadata
/// cannot be read (the decoder then reports the problem) or it has no mtime.
fn stamp(path: &Path) -> Option<String> {
    let meta = fs::metadata(path).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    let abs = std::path::absolute(path).ok()?;
    #[cfg(unix)]
    let changed = {
        use std::os::unix::fs::MetadataExt;
        format!(
            "\t{}\t{}.{:09}",
            meta.ino(),
            meta.ctime(),
            meta.ctime_nsec()
        )
    };
    #[cfg(not(unix))]
    let changed = String::new();
    Some(format!(
        "{}\t{}\t{mtime}{changed}",
        abs.display(),
        meta.len()
    ))
}

/// Cache entry layout: magic, key length (u32 LE), key, payload length (u64 LE), payload,
/// checksum of key and payload (u64 LE). Change the magic when decoding or resizing changes
/// (a new `image` release included), so that old entries are rebuilt.
const CACHE_MAGIC: &[u8; 8] = b"memadpx1";

/// The `len` bytes cached under `key` in `dir`, or `build()`'s, written there for next time.
/// `key = None` (source not stamped) bypasses the cache; a failed write is ignored (the
/// cache only saves time).
fn cached(
    dir: &Path,
    key: Option<String>,
    len: usize,
    build: impl FnOnce() -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    let Some(key) = key else {
        return build();
    };
    let name = format!("{:016x}.px", fnv1a(key.as_bytes()));
    let path = dir.join(&name);
    if let Some(pixels) = fs::read(&path)
        .ok()
        .and_then(|bytes| parse_entry(&bytes, &key, len))
    {
        return Ok(pixels);
    }
    let pixels = build()?;
    if pixels.len() == len {
        let _ = write_entry(dir, &name, &key, &pixels);
    }
    Ok(pixels)
}

/// The payload of a valid entry for `key` of `len` bytes; `None` for anything else.
fn parse_entry(bytes: &[u8], key: &str, len: usize) -> Option<Vec<u8>> {
    let rest = bytes.strip_prefix(CACHE_MAGIC)?;
    let (klen, rest) = rest.split_first_chunk::<4>()?;
    let (k, rest) = rest.split_at_checked(u32::from_le_bytes(*klen) as usize)?;
    let (plen, rest) = rest.split_first_chunk::<8>()?;
    if k != key.as_bytes() || u64::from_le_bytes(*plen) != len as u64 || rest.len() != len + 8 {
        return None;
    }
    let (payload, sum) = rest.split_at(len);
    (sum == checksum(k, payload).to_le_bytes()).then(|| payload.to_vec())
}

/// Writes the entry to a unique temporary file in `dir`, then renames it to `name`.
fn write_entry(dir: &Path, name: &str, key: &str, payload: &[u8]) -> std::io::Result<()> {
    static TMP: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        TMP.fetch_add(1, Ordering::Relaxed)
    ));
    let mut bytes = Vec::with_capacity(CACHE_MAGIC.len() + 4 + key.len() + 8 + payload.len() + 8);
    bytes.extend_from_slice(CACHE_MAGIC);
    bytes.extend_from_slice(&(key.len() as u32).to_le_bytes());
    bytes.extend_from_slice(key.as_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes.extend_from_slice(&checksum(key.as_bytes(), payload).to_le_bytes());
    let written = fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&bytes))
        .and_then(|()| fs::rename(&tmp, dir.join(name)));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// FNV-1a, 64 bits: the entry's file name from its key.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A fast 64-bit checksum of the key and payload (8 bytes at a time), against torn or
/// damaged entries.
fn checksum(key: &[u8], payload: &[u8]) -> u64 {
    let mut h = fnv1a(key) ^ payload.len() as u64;
    let mut words = payload.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        h = (h ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
    for &b in words.remainder() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix(h)
}

/// The synthesis seed of sample `index` in an epoch seeded `seed` (SplitMix64 of both).
fn sample_seed(seed: u64, index: usize) -> u64 {
    splitmix(seed ^ splitmix(index as u64))
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Iterates over batches of `order` (indices into `samples`), decoding one batch ahead on
/// a background thread.
pub struct BatchLoader {
    receiver: mpsc::Receiver<Result<HostBatch>>,
    worker: Option<thread::JoinHandle<()>>,
    pub batches: usize,
}

impl BatchLoader {
    pub fn new(
        samples: Vec<Sample>,
        order: Vec<usize>,
        batch_size: usize,
        opts: LoadOptions,
    ) -> Self {
        Self::with_cache(samples, order, batch_size, opts, None)
    }

    /// [`BatchLoader::new`] with an on-disk cache folder of decoded, resized images
    /// (`None`: no cache), shared by every epoch and run that gives the same folder.
    pub fn with_cache(
        samples: Vec<Sample>,
        order: Vec<usize>,
        batch_size: usize,
        opts: LoadOptions,
        cache: Option<PathBuf>,
    ) -> Self {
        let batch_size = batch_size.max(1);
        let batches = order.len().div_ceil(batch_size);
        let (sender, receiver) = mpsc::sync_channel(2);
        let worker = thread::spawn(move || {
            for chunk in order.chunks(batch_size) {
                let batch = load_batch_with_cache(&samples, chunk, &opts, cache.as_deref());
                if sender.send(batch).is_err() {
                    return; // the consumer stopped early
                }
            }
        });
        BatchLoader {
            receiver,
            worker: Some(worker),
            batches,
        }
    }
}

impl Iterator for BatchLoader {
    type Item = Result<HostBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.receiver.recv().ok()
    }
}

impl Drop for BatchLoader {
    fn drop(&mut self) {
        // Unblock the worker by dropping the receiver first, then join it.
        let (_, dead) = mpsc::sync_channel(0);
        drop(std::mem::replace(&mut self.receiver, dead));
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// A deterministic permutation of `0..n` (Fisher-Yates with SplitMix64).
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut next = || {
        let z = splitmix(state);
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centre_crop_keeps_the_middle_of_images_and_masks() {
        let dir = tempfile::tempdir().unwrap();
        let samples = masked_samples(dir.path(), 2);
        let full = load_batch(
            &samples,
            &[0, 1],
            &LoadOptions {
                with_masks: true,
                ..LoadOptions::new(Geometry::square(24))
            },
        )
        .unwrap();
        let opts = LoadOptions {
            with_masks: true,
            ..LoadOptions::new(square(24, 16))
        };
        let cropped = load_batch(&samples, &[0, 1], &opts).unwrap();
        assert_eq!(cropped.size, 16);
        assert_eq!(cropped.images.len(), 2 * 3 * 16 * 16);
        let (fm, cm) = (full.masks.unwrap(), cropped.masks.unwrap());
        for plane in 0..6 {
            for y in 0..16 {
                for x in 0..16 {
                    let want = full.images[plane * 576 + (y + 4) * 24 + x + 4];
                    assert_eq!(cropped.images[plane * 256 + y * 16 + x], want);
                }
            }
        }
        for b in 0..2 {
            assert_eq!(cm[b * 256 + 5 * 16 + 7], fm[b * 576 + 9 * 24 + 11]);
        }
        let too_big = LoadOptions::new(square(24, 25));
        let err = load_batch(&samples, &[0], &too_big)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("centre crop 25 must be between 1 and the decoded size 24"),
            "{err}"
        );
    }

    /// The 92 x 60 image of tests/fixtures (tools/make_resize_shape_fixture.py), anomalous
    /// with a block mask (x 46..70, y 20..40) and, copied beside it, the same pattern with
    /// that block painted white: where the mask says, the image must too.
    fn non_square_samples(dir: &Path) -> Vec<Sample> {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut rgb = image::open(fixtures.join("resize_shape_landscape.png"))
            .unwrap()
            .into_rgb8();
        let mut mask = image::GrayImage::new(92, 60);
        for y in 20..40 {
            for x in 46..70 {
                rgb.put_pixel(x, y, Rgb([255, 255, 255]));
                mask.put_pixel(x, y, image::Luma([255]));
            }
        }
        let (image, mask_path) = (dir.join("wide.png"), dir.join("wide_mask.png"));
        rgb.save(&image).unwrap();
        mask.save(&mask_path).unwrap();
        let plain = fixtures.join("resize_shape_landscape.png");
        vec![
            Sample::still(
                image,
                crate::mvtec::Label::Anomalous,
                "block",
                Some(MaskRef::File(mask_path)),
            ),
            Sample::still(plain, crate::mvtec::Label::Normal, "good", None),
        ]
    }

    /// A square resize to `resize`, then the centre crop `crop`.
    fn square(resize: u32, crop: u32) -> Geometry {
        Geometry {
            crop: Some(crop),
            ..Geometry::square(resize)
        }
    }

    /// Images and masks with the shorter side resized to `resize`, then the centre crop
    /// `crop`.
    fn shorter_side(resize: u32, crop: u32) -> LoadOptions {
        LoadOptions {
            with_masks: true,
            ..LoadOptions::new(Geometry {
                shape: ResizeShape::ShorterSide,
                crop: Some(crop),
                ..Geometry::square(resize)
            })
        }
    }

    /// `opts` with a square resize (as [`shorter_side`]'s, stretching non-square images).
    fn square_of(opts: &LoadOptions) -> LoadOptions {
        LoadOptions {
            geometry: Geometry {
                shape: ResizeShape::Square,
                ..opts.geometry
            },
            ..opts.clone()
        }
    }

    #[test]
    fn shorter_side_batches_keep_the_aspect_ratio_and_masks_follow_their_images() {
        let dir = tempfile::tempdir().unwrap();
        let samples = non_square_samples(dir.path());
        let opts = shorter_side(32, 28);
        let batch = load_batch(&samples, &[0, 1], &opts).unwrap();
        assert_eq!((batch.size, batch.channels), (28, 3));
        // Each image as image_io's resize (49 x 32, torchvision's) and crop at (10, 2).
        let plane = 28 * 28;
        let geometry = opts.geometry;
        for (k, s) in samples.iter().enumerate() {
            let mut want = Vec::new();
            push_chw(&load_rgb_fitted(&s.image, &geometry).unwrap(), &mut want);
            assert_eq!(batch.images[k * 3 * plane..(k + 1) * 3 * plane], want[..]);
        }
        // The mask (nearest) covers the white block of the image: every wholly white image
        // pixel is in the mask, and every mask pixel is white or beside a white one (the
        // image's bilinear edge, the mask's nearest one).
        let masks = batch.masks.as_ref().unwrap();
        let white = |p: usize| (0..3).all(|c| batch.images[c * plane + p] == 1.0);
        let marked: Vec<usize> = (0..plane).filter(|&p| masks[p] == 1.0).collect();
        let whites: Vec<usize> = (0..plane).filter(|&p| white(p)).collect();
        assert!(whites.len() > 80);
        assert!(whites.iter().all(|p| marked.contains(p)));
        let near_white = |p: usize| {
            let (x, y) = ((p % 28) as i64, (p / 28) as i64);
            whites.iter().any(|&q| {
                let (qx, qy) = ((q % 28) as i64, (q / 28) as i64);
                (qx - x).abs() <= 1 && (qy - y).abs() <= 1
            })
        };
        assert!(marked.iter().all(|&p| near_white(p)));
        // The block lands where the geometry puts it: resized to 49 x 32, a pixel (X, Y)
        // samples the source at ((X + 0.5) * 92/49, (Y + 0.5) * 60/32) (nearest at pixel
        // centres), in the block for X 24..=36, Y 11..=20; minus the crop's (10, 2).
        let columns: Vec<usize> = marked.iter().map(|p| p % 28).collect();
        let rows: Vec<usize> = marked.iter().map(|p| p / 28).collect();
        assert_eq!(
            (columns.iter().min(), columns.iter().max()),
            (Some(&14), Some(&26))
        );
        assert_eq!(
            (rows.iter().min(), rows.iter().max()),
            (Some(&9), Some(&18))
        );
        assert_eq!(marked.len(), 13 * 10);
        assert!(masks[plane..].iter().all(|&m| m == 0.0), "a normal sample");
        // A square resize would stretch: the same block elsewhere.
        let stretched = load_batch(&samples, &[0], &square_of(&opts)).unwrap();
        assert_ne!(stretched.masks.unwrap()[..], masks[..plane]);
    }

    #[test]
    fn cache_keys_name_what_is_stored() {
        // A square entry is the uncropped decode, keyed by its size alone (as before the
        // shorter-side mode existed, so that earlier caches stay valid) and shared by every
        // crop; a shorter-side entry is the cropped input.
        let square = square(256, 224);
        assert_eq!(stored(&square), Geometry::square(256));
        assert_eq!(geometry_key(&stored(&square)), "256");
        let shorter = shorter_side(256, 224).geometry;
        assert_eq!(stored(&shorter), shorter);
        assert_eq!(geometry_key(&stored(&shorter)), "shorter_side 256 crop 224");
    }

    #[test]
    fn shorter_side_equals_square_on_square_images() {
        let dir = tempfile::tempdir().unwrap();
        let samples = masked_samples(dir.path(), 4);
        let shorter = shorter_side(20, 15);
        let a = load_batch(&samples, &[0, 1, 2, 3], &square_of(&shorter)).unwrap();
        let b = load_batch(&samples, &[0, 1, 2, 3], &shorter).unwrap();
        assert_eq!(b.size, 15);
        assert!(same(&a, &b));
    }

    #[test]
    fn the_cache_never_reuses_a_square_decode_for_a_shorter_side_one() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let samples = non_square_samples(dir.path());
        let square = square_of(&shorter_side(32, 28));
        let all = [0, 1];
        let plain_square = load_batch(&samples, &all, &square).unwrap();
        let plain_shorter = load_batch(&samples, &all, &shorter_side(32, 28)).unwrap();
        assert!(!same(&plain_square, &plain_shorter));
        let cached =
            |opts: &LoadOptions| load_batch_with_cache(&samples, &all, opts, Some(&cache)).unwrap();
        // The square entries first (2 images + 1 mask), then the shorter-side ones, with
        // their own keys (3 more); each read back equal to its uncached batch.
        assert!(same(&cached(&square), &plain_square));
        assert_eq!(entries(&cache).len(), 3);
        assert!(same(&cached(&shorter_side(32, 28)), &plain_shorter));
        assert_eq!(entries(&cache).len(), 6);
        let before = entries(&cache);
        assert!(same(&cached(&shorter_side(32, 28)), &plain_shorter));
        assert!(same(&cached(&square), &plain_square));
        // Another crop is another shorter-side entry (the entry is cropped); a square one
        // is shared by every crop.
        let plain_24 = load_batch(&samples, &all, &shorter_side(32, 24)).unwrap();
        assert!(same(&cached(&shorter_side(32, 24)), &plain_24));
        assert_eq!(entries(&cache).len(), 9);
        assert!(
            before.iter().all(|e| entries(&cache).contains(e)),
            "none rewritten"
        );
    }

    #[test]
    fn shuffle_is_a_deterministic_permutation() {
        let a = shuffled(100, 7);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, shuffled(100, 7));
        assert_ne!(a, shuffled(100, 8));
    }

    fn textured_samples(dir: &std::path::Path, n: usize) -> Vec<Sample> {
        (0..n)
            .map(|i| {
                let path = dir.join(format!("{i}.png"));
                RgbImage::from_fn(24, 24, |x, y| {
                    Rgb([
                        (x * 10 + i as u32) as u8,
                        (y * 10) as u8,
                        ((x ^ y) * 16) as u8,
                    ])
                })
                .save(&path)
                .unwrap();
                Sample::still(path, crate::mvtec::Label::Normal, "good", None)
            })
            .collect()
    }

    #[test]
    fn load_batch_adds_classes_and_reproducible_synthetic_anomalies() {
        let dir = tempfile::tempdir().unwrap();
        let samples = textured_samples(dir.path(), 4);
        let synth: Arc<dyn AnomalySynthesizer> =
            Arc::new(crate::synthesis::CutPasteSynthesizer::new(Default::default()).unwrap());
        let opts = LoadOptions {
            with_masks: false,
            classes: vec![0, 0, 1, 2],
            synthesis: Some((synth, 5)),
            ..LoadOptions::new(Geometry::square(24))
        };
        let batch = load_batch(&samples, &[3, 1], &opts).unwrap();
        assert_eq!(batch.classes, Some(vec![2, 0]));
        let (images, masks) = batch.synthetic.clone().unwrap();
        assert_eq!(images.len(), batch.images.len());
        let plane = 24 * 24;
        assert_eq!(masks.len(), 2 * plane);
        for k in 0..2 {
            let mask = &masks[k * plane..(k + 1) * plane];
            assert!(mask.contains(&1.0), "CutPaste always pastes");
            // Pixels outside the mask are the decoded image's, exactly.
            for c in 0..3 {
                for p in (0..plane).filter(|&p| mask[p] == 0.0) {
                    let i = (k * 3 + c) * plane + p;
                    assert_eq!(images[i], batch.images[i]);
                }
            }
        }
        // A sample's anomaly depends on the epoch seed and the sample, not on its batch.
        let alone = load_batch(&samples, &[1], &opts).unwrap();
        assert_eq!(alone.synthetic.unwrap().1, masks[plane..].to_vec());
        let other_epoch = LoadOptions {
            synthesis: opts.synthesis.clone().map(|(s, _)| (s, 6)),
            ..opts.clone()
        };
        let moved = load_batch(&samples, &[1], &other_epoch).unwrap();
        assert_ne!(moved.synthetic.unwrap().1, masks[plane..].to_vec());
        // Into a Batch: shapes and dtypes as the methods expect.
        let b = batch.to_batch(tch::Device::Cpu);
        assert_eq!(b.class.unwrap().size(), [2]);
        let s = b.synthetic.unwrap();
        assert_eq!(s.input.size(), [2, 3, 24, 24]);
        assert_eq!(s.mask.size(), [2, 1, 24, 24]);
    }

    /// `n` textured 24x24 images in `dir`, the odd ones anomalous with a mask file.
    fn masked_samples(dir: &Path, n: usize) -> Vec<Sample> {
        let mut samples = textured_samples(dir, n);
        for (i, s) in samples.iter_mut().enumerate().filter(|(i, _)| i % 2 == 1) {
            let path = dir.join(format!("{i}_mask.png"));
            image::GrayImage::from_fn(24, 24, |x, y| image::Luma([((x + y) % 7 * 40) as u8]))
                .save(&path)
                .unwrap();
            s.label = crate::mvtec::Label::Anomalous;
            s.mask = Some(MaskRef::File(path));
        }
        samples
    }

    fn entries(dir: &Path) -> Vec<(PathBuf, std::time::SystemTime, u64)> {
        let mut out: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let meta = e.metadata().unwrap();
                (e.path(), meta.modified().unwrap(), meta.len())
            })
            .collect();
        out.sort();
        out
    }

    fn same(a: &HostBatch, b: &HostBatch) -> bool {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        bits(&a.images) == bits(&b.images)
            && a.masks.as_deref().map(bits) == b.masks.as_deref().map(bits)
    }

    #[test]
    fn cached_batches_equal_uncached_ones_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let samples = masked_samples(dir.path(), 4);
        let all = [0, 1, 2, 3];
        for (size, with_masks) in [(16, true), (24, false)] {
            let plain = decode_batch(&samples, &all, size, with_masks).unwrap();
            let filled = decode_batch_with_cache(
                &samples,
                &all,
                size,
                with_masks.then_some(MaskResize::Nearest),
                Some(&cache),
            );
            assert!(same(&plain, &filled.unwrap()));
            let before = entries(&cache);
            let read = decode_batch_with_cache(
                &samples,
                &all,
                size,
                with_masks.then_some(MaskResize::Nearest),
                Some(&cache),
            );
            assert!(same(&plain, &read.unwrap()));
            assert_eq!(entries(&cache), before, "entries read back, not rewritten");
        }
        // 4 images at 16 px + 2 masks, then 4 images at 24 px (another key).
        assert_eq!(entries(&cache).len(), 10);
        // Through the prefetching loader.
        let opts = LoadOptions {
            with_masks: true,
            ..LoadOptions::new(Geometry::square(16))
        };
        let loader = BatchLoader::with_cache(samples.clone(), vec![3, 0, 1], 2, opts, Some(cache));
        let got: Vec<HostBatch> = loader.map(|b| b.unwrap()).collect();
        assert!(same(
            &got[0],
            &decode_batch(&samples, &[3, 0], 16, true).unwrap()
        ));
        assert!(same(
            &got[1],
            &decode_batch(&samples, &[1], 16, true).unwrap()
        ));
    }

    #[test]
    fn a_touched_source_file_invalidates_its_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let samples = textured_samples(dir.path(), 2);
        let old = decode_batch_with_cache(&samples, &[0, 1], 16, None, Some(&cache)).unwrap();
        // New pixels and a later mtime.
        let path = &samples[0].image;
        let mut rgb = image::open(path).unwrap().into_rgb8();
        rgb.pixels_mut()
            .for_each(|p| p.0 = [255 - p[0], p[1], p[2]]);
        rgb.save(path).unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(10);
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let new = decode_batch_with_cache(&samples, &[0, 1], 16, None, Some(&cache)).unwrap();
        assert!(same(
            &new,
            &decode_batch(&samples, &[0, 1], 16, false).unwrap()
        ));
        assert!(!same(&new, &old));
    }

    /// `rsync -a` or `cp -p` of a corrected image: same size (an uncompressed BMP), same
    /// mtime, new content through a rename.
    #[test]
    #[cfg(unix)]
    fn a_file_replaced_with_its_size_and_mtime_kept_invalidates_its_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let path = dir.path().join("a.bmp");
        let save = |to: &Path, shade: u8| {
            image::RgbImage::from_fn(20, 20, |x, y| {
                image::Rgb([shade, (x * 9) as u8, (y * 9) as u8])
            })
            .save(to)
            .unwrap();
        };
        save(&path, 10);
        let samples = [Sample::still(
            path.clone(),
            crate::Label::Normal,
            "good",
            None,
        )];
        let old = decode_batch_with_cache(&samples, &[0], 16, None, Some(&cache)).unwrap();
        let (size, mtime) = (
            fs::metadata(&path).unwrap().len(),
            fs::metadata(&path).unwrap().modified().unwrap(),
        );
        let replacement = dir.path().join("b.bmp");
        save(&replacement, 200);
        fs::File::options()
            .write(true)
            .open(&replacement)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        fs::rename(&replacement, &path).unwrap();
        assert_eq!(
            (
                fs::metadata(&path).unwrap().len(),
                fs::metadata(&path).unwrap().modified().unwrap()
            ),
            (size, mtime)
        );
        let new = decode_batch_with_cache(&samples, &[0], 16, None, Some(&cache)).unwrap();
        assert!(same(
            &new,
            &decode_batch(&samples, &[0], 16, false).unwrap()
        ));
        assert!(!same(&new, &old));
    }

    #[test]
    fn truncated_or_damaged_entries_are_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let samples = masked_samples(dir.path(), 2);
        let plain = decode_batch(&samples, &[0, 1], 16, true).unwrap();
        let cached = || {
            let masks = Some(MaskResize::Nearest);
            decode_batch_with_cache(&samples, &[0, 1], 16, masks, Some(&cache)).unwrap()
        };
        cached();
        let full = entries(&cache);
        assert_eq!(full.len(), 3);
        // Truncate one, flip a payload byte of another, empty the third.
        let bytes = fs::read(&full[0].0).unwrap();
        fs::write(&full[0].0, &bytes[..bytes.len() / 2]).unwrap();
        let mut bytes = fs::read(&full[1].0).unwrap();
        let at = bytes.len() - 20;
        bytes[at] ^= 0x40;
        fs::write(&full[1].0, &bytes).unwrap();
        fs::write(&full[2].0, b"").unwrap();
        let again = cached();
        assert!(same(&plain, &again));
        let rebuilt = entries(&cache);
        assert_eq!(
            rebuilt.iter().map(|e| (&e.0, e.2)).collect::<Vec<_>>(),
            full.iter().map(|e| (&e.0, e.2)).collect::<Vec<_>>(),
            "every entry rewritten at full length, no temporary files left"
        );
        // A damaged entry is never trusted: the rebuilt ones read back equal.
        let read = cached();
        assert!(same(&plain, &read));
    }
}
