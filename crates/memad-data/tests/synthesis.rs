//! Anomaly synthesis: determinism, exact masks, areas, texture-folder and config errors, and
//! a contact sheet (`$TMPDIR/memad-synthesis.png`) for looking at the samples.
use image::{GrayImage, Rgb, RgbImage};
use memad_core::{parse_section, to_toml_value};
use memad_data::synthesis::{
    build, AnomalySynthesizer, CutPasteConfig, CutPasteVariant, DraemConfig, DraemSynthesizer,
    SynthesisConfig, Synthesized,
};
use memad_data::synthetic::render_sample;
use std::path::Path;

const SIZE: u32 = 96;

fn normal_image(seed: u64) -> RgbImage {
    render_sample("carpet", None, SIZE, seed).unwrap().image
}

/// Saturated, noisy colour images unlike the carpet, so a blend visibly changes pixels.
fn write_textures(dir: &Path, count: u32) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for t in 0..count {
        let img = RgbImage::from_fn(80, 64, |x, y| {
            let h = (x * 31 + y * 17 + t * 101).wrapping_mul(2_654_435_761);
            Rgb([
                (h >> 24) as u8 / 4 + if t % 2 == 0 { 190 } else { 0 },
                (h >> 16) as u8 / 4,
                if t % 2 == 0 { 0 } else { 200 },
            ])
        });
        let sub = if t % 2 == 0 { "" } else { "sub" };
        img.save(dir.join(sub).join(format!("t{t}.png"))).unwrap();
    }
}

fn all_kinds(texture_dir: &Path) -> Vec<(&'static str, Box<dyn AnomalySynthesizer>)> {
    let draem = |dir: Option<&Path>| {
        SynthesisConfig::Draem(DraemConfig {
            texture_dir: dir.map(Path::to_path_buf),
            ..DraemConfig::default()
        })
    };
    let cutpaste = |variant| {
        SynthesisConfig::Cutpaste(CutPasteConfig {
            variant,
            ..CutPasteConfig::default()
        })
    };
    vec![
        ("draem-builtin", build(&draem(None)).unwrap()),
        ("draem-textures", build(&draem(Some(texture_dir))).unwrap()),
        (
            "cutpaste",
            build(&cutpaste(CutPasteVariant::Normal)).unwrap(),
        ),
        ("scar", build(&cutpaste(CutPasteVariant::Scar)).unwrap()),
    ]
}

fn masked(mask: &GrayImage) -> usize {
    mask.pixels().filter(|p| p[0] == 255).count()
}

/// Mask is 0/255, pixels outside it are unchanged, `has_anomaly` iff the mask is non-empty.
fn check_exact(what: &str, input: &RgbImage, out: &Synthesized) {
    assert_eq!(out.image.dimensions(), input.dimensions(), "{what}");
    assert_eq!(out.mask.dimensions(), input.dimensions(), "{what}");
    for ((m, a), b) in out
        .mask
        .pixels()
        .zip(input.pixels())
        .zip(out.image.pixels())
    {
        assert!(m[0] == 0 || m[0] == 255, "{what}: mask value {}", m[0]);
        if m[0] == 0 {
            assert_eq!(a, b, "{what}: a pixel outside the mask changed");
        }
    }
    assert_eq!(out.has_anomaly, masked(&out.mask) > 0, "{what}");
}

#[test]
fn same_seed_same_bytes_and_masks_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    write_textures(dir.path(), 4);
    let input = normal_image(7);
    for (name, synth) in all_kinds(dir.path()) {
        let mut outputs = Vec::new();
        for seed in 0..12 {
            let a = synth.synthesize(&input, seed).unwrap();
            let b = synth.synthesize(&input, seed).unwrap();
            assert_eq!(a, b, "{name} seed {seed} is not deterministic");
            check_exact(&format!("{name} seed {seed}"), &input, &a);
            outputs.push(a);
        }
        let anomalous = outputs.iter().filter(|o| o.has_anomaly).count();
        assert!(anomalous >= 2, "{name}: only {anomalous} of 12 anomalous");
        let distinct: std::collections::HashSet<_> = outputs
            .iter()
            .filter(|o| o.has_anomaly)
            .map(|o| o.image.as_raw().clone())
            .collect();
        assert_eq!(distinct.len(), anomalous, "{name}: seeds repeat");
        if name.starts_with("draem") {
            assert!(anomalous < 12, "{name}: DRAEM keeps about half unchanged");
        } else {
            assert_eq!(anomalous, 12, "{name}: CutPaste always pastes");
        }
    }
}

#[test]
fn draem_changes_the_masked_pixels_where_the_source_weighs_enough() {
    let dir = tempfile::tempdir().unwrap();
    write_textures(dir.path(), 4);
    let synth = DraemSynthesizer::new(DraemConfig {
        texture_dir: Some(dir.path().to_path_buf()),
        ..DraemConfig::default()
    })
    .unwrap();
    assert_eq!(
        synth.textures().len(),
        4,
        "the folder is searched recursively"
    );
    let input = normal_image(3);
    let mut checked = 0;
    let (mut drawn, mut total) = (0, 0);
    for seed in 0..60 {
        let (out, draw) = synth.synthesize_with_draw(&input, seed).unwrap();
        total += 1;
        drawn += draw.anomaly_drawn as usize;
        assert!((0.0..=0.8).contains(&draw.beta));
        assert!((-90.0..=90.0).contains(&draw.angle_deg));
        if draw.anomaly_drawn {
            assert_eq!(draw.augmentations.len(), 3);
            let (rx, ry) = draw.resolution;
            assert!(rx.is_power_of_two() && rx <= 32 && ry.is_power_of_two() && ry <= 32);
        }
        let n = masked(&out.mask);
        // The source weighs 1 - beta >= 0.2 inside the mask (the official code's blend).
        if draw.beta < 0.7 && n > 0 {
            let changed = out
                .mask
                .pixels()
                .zip(input.pixels().zip(out.image.pixels()))
                .filter(|(m, (a, b))| m[0] == 255 && a != b)
                .count();
            assert!(
                changed as f32 >= 0.95 * n as f32,
                "seed {seed}: beta {} changed {changed} of {n} masked pixels",
                draw.beta
            );
            // A Perlin blob, not the whole image.
            assert!(n < (SIZE * SIZE) as usize * 3 / 4, "seed {seed}: mask {n}");
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} seeds with beta < 0.7");
    let rate = drawn as f32 / total as f32;
    assert!((0.3..=0.7).contains(&rate), "anomaly rate {rate}");
}

#[test]
fn draem_anomaly_probability_is_configurable() {
    let never = DraemSynthesizer::new(DraemConfig {
        anomaly_probability: 0.0,
        ..DraemConfig::default()
    })
    .unwrap();
    let input = normal_image(1);
    for seed in 0..5 {
        let out = never.synthesize(&input, seed).unwrap();
        assert!(!out.has_anomaly);
        assert_eq!(out.image, input);
    }
}

#[test]
fn cutpaste_mask_areas_match_the_paper() {
    let input = RgbImage::from_fn(256, 256, |x, y| Rgb([x as u8, y as u8, (x ^ y) as u8]));
    let normal = build(&SynthesisConfig::Cutpaste(CutPasteConfig::default())).unwrap();
    let scar = build(&SynthesisConfig::Cutpaste(CutPasteConfig {
        variant: CutPasteVariant::Scar,
        colour_jitter: 0.0,
    }))
    .unwrap();
    let total = 256.0 * 256.0;
    for seed in 0..20 {
        let out = normal.synthesize(&input, seed).unwrap();
        let area = masked(&out.mask) as f32 / total;
        assert!((0.017..=0.16).contains(&area), "normal seed {seed}: {area}");
        let out = scar.synthesize(&input, seed).unwrap();
        let n = masked(&out.mask) as f32;
        assert!(
            (10.0..=16.0 * 25.0 * 1.15).contains(&n),
            "scar seed {seed}: {n}"
        );
        // Without jitter the scar is moved image content: most pasted pixels differ here.
        let changed = out
            .mask
            .pixels()
            .zip(input.pixels().zip(out.image.pixels()))
            .filter(|(m, (a, b))| m[0] == 255 && a != b)
            .count();
        assert!(
            changed as f32 >= 0.5 * n,
            "scar seed {seed}: {changed} of {n}"
        );
    }
}

#[test]
fn texture_folder_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dtd");
    let config = |p: &Path| {
        SynthesisConfig::Draem(DraemConfig {
            texture_dir: Some(p.to_path_buf()),
            ..DraemConfig::default()
        })
    };
    let err = build(&config(&missing)).err().unwrap().to_string();
    assert!(err.contains("no-such-dtd"), "{err}");
    let empty = dir.path().join("empty-dtd");
    std::fs::create_dir_all(empty.join("banded")).unwrap();
    std::fs::write(empty.join("banded/readme.txt"), "no images").unwrap();
    let err = build(&config(&empty)).err().unwrap().to_string();
    assert!(
        err.contains("empty-dtd") && err.contains("no images"),
        "{err}"
    );
    // A corrupt texture is reported when it is used, naming the file.
    let corrupt = dir.path().join("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(corrupt.join("bad.png"), "not a png").unwrap();
    let synth = build(&config(&corrupt)).unwrap();
    let input = normal_image(0);
    let err = (0..20)
        .find_map(|seed| synth.synthesize(&input, seed).err())
        .expect("some seed draws an anomaly")
        .to_string();
    assert!(err.contains("bad.png"), "{err}");
}

#[test]
fn configs_parse_with_defaults_and_reject_typos() {
    let parse = |text: &str| {
        let value: toml::Value = toml::from_str(text).unwrap();
        parse_section::<SynthesisConfig>(&value, "method.synthesis")
    };
    assert_eq!(
        parse("kind = \"draem\"").unwrap(),
        SynthesisConfig::Draem(DraemConfig::default())
    );
    let d = DraemConfig::default();
    assert_eq!(
        (
            d.perlin_scale,
            d.min_perlin_scale,
            d.beta_max,
            d.anomaly_probability
        ),
        (6, 0, 0.8, 0.5)
    );
    assert_eq!(
        parse("kind = \"cutpaste\"\nvariant = \"scar\"").unwrap(),
        SynthesisConfig::Cutpaste(CutPasteConfig {
            variant: CutPasteVariant::Scar,
            colour_jitter: 0.1
        })
    );
    let err = parse("kind = \"draem\"\nbeta_maks = 0.5").unwrap_err();
    assert!(err.to_string().contains("beta_maks"), "{err}");
    let err = parse("kind = \"cutpaste\"\nvariant = \"scars\"").unwrap_err();
    assert!(err.to_string().contains("scars"), "{err}");
    let err = parse("kind = \"drem\"").unwrap_err();
    assert!(err.to_string().contains("drem"), "{err}");
    // The resolved config round-trips.
    let config = SynthesisConfig::Draem(DraemConfig {
        texture_dir: Some("/data/dtd/images".into()),
        ..DraemConfig::default()
    });
    let value = to_toml_value(&config).unwrap();
    assert_eq!(
        parse_section::<SynthesisConfig>(&value, "s").unwrap(),
        config
    );
    assert!(to_toml_value(&SynthesisConfig::default()).is_ok());
    // Invalid values are refused by `build`.
    let err = build(&SynthesisConfig::Draem(DraemConfig {
        beta_max: 1.5,
        ..DraemConfig::default()
    }))
    .err()
    .unwrap();
    assert!(err.to_string().contains("beta_max"), "{err}");
}

/// Rows: draem (built-in), draem (textures), cutpaste, scar; columns: image, mask pairs.
#[test]
fn contact_sheet() {
    let dir = tempfile::tempdir().unwrap();
    write_textures(dir.path(), 4);
    let side = 128;
    let input = render_sample("wood", None, side, 11).unwrap().image;
    let kinds = all_kinds(dir.path());
    let cols = 4u32;
    let cell = side + 4;
    let mut sheet = RgbImage::from_pixel(
        cell * (1 + 2 * cols),
        cell * kinds.len() as u32,
        Rgb([40, 40, 40]),
    );
    for (row, (name, synth)) in kinds.iter().enumerate() {
        let y = row as u32 * cell;
        image::imageops::replace(&mut sheet, &input, 0, y as i64);
        let mut col = 0;
        for seed in (0..40).map(|s| s + 1000 * row as u64) {
            if col == cols {
                break;
            }
            let out = synth.synthesize(&input, seed).unwrap();
            if !out.has_anomaly {
                continue;
            }
            let x = cell * (1 + 2 * col);
            image::imageops::replace(&mut sheet, &out.image, x as i64, y as i64);
            let mask = image::DynamicImage::ImageLuma8(out.mask).into_rgb8();
            image::imageops::replace(&mut sheet, &mask, (x + cell) as i64, y as i64);
            col += 1;
        }
        // Every row gets its columns: 40 seeds give `cols` anomalous samples.
        assert_eq!(col, cols, "{name}: {col} of {cols} samples with an anomaly");
    }
    sheet
        .save(std::env::temp_dir().join("memad-synthesis.png"))
        .unwrap();
}

#[test]
fn perlin_noise_is_deterministic_smooth_and_zero_on_the_lattice() {
    use memad_data::synthesis::PerlinNoise;
    let a = PerlinNoise::new(4, 8, 5);
    assert_eq!(a.render(32, 32), PerlinNoise::new(4, 8, 5).render(32, 32));
    assert_ne!(a.render(32, 32), PerlinNoise::new(4, 8, 6).render(32, 32));
    assert_eq!(a.resolution(), (4, 8));
    for i in 0..=4 {
        for j in 0..=8 {
            assert!(a.at(i as f32, j as f32).abs() < 1e-6);
        }
    }
    let values = a.render(64, 64);
    assert!(values.iter().all(|v| v.abs() <= 1.0 + 1e-5));
    assert!(values.iter().any(|&v| v > 0.3) && values.iter().any(|&v| v < -0.3));
    // Smooth: neighbouring pixels differ little.
    for y in 0..64 {
        for x in 1..64 {
            let d = (values[y * 64 + x] - values[y * 64 + x - 1]).abs();
            assert!(d < 0.2, "jump {d} at ({x}, {y})");
        }
    }
}
