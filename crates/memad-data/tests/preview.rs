//! Writes contact sheets of the synthetic textures and defects for looking at them:
//! `cargo test -p memad-data --test preview -- --ignored` (then open /tmp/memad-preview/).
use image::{imageops, Rgb, RgbImage};
use memad_data::synthetic::{render_sample, SYNTHETIC_CATEGORIES, SYNTHETIC_DEFECTS};

#[test]
#[ignore = "writes preview images to /tmp/memad-preview"]
fn write_previews() {
    let size = std::env::var("MEMAD_PREVIEW_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(128u32);
    let dir = std::path::Path::new("/tmp/memad-preview");
    std::fs::create_dir_all(dir).unwrap();
    // One row per category: 3 normal images, then each defect with its mask outlined in red.
    let cols = 3 + SYNTHETIC_DEFECTS.len() as u32;
    let gap = 4;
    let mut sheet = RgbImage::from_pixel(
        cols * (size + gap),
        2 * SYNTHETIC_CATEGORIES.len() as u32 * (size + gap),
        Rgb([255, 255, 255]),
    );
    for (row, category) in SYNTHETIC_CATEGORIES.iter().enumerate() {
        let y = 2 * row as u32 * (size + gap);
        for k in 0..3 {
            let s = render_sample(category, None, size, 100 + k).unwrap();
            s.image
                .save(dir.join(format!("{category}_good_{k}.png")))
                .unwrap();
            imageops::replace(
                &mut sheet,
                &s.image,
                (k as u32 * (size + gap)) as i64,
                y as i64,
            );
        }
        for (d, defect) in SYNTHETIC_DEFECTS.iter().enumerate() {
            let s = render_sample(category, Some(defect), size, 7 + d as u64 + 10 * row as u64)
                .unwrap();
            let mask = s.mask.unwrap();
            s.image
                .save(dir.join(format!("{category}_{defect}.png")))
                .unwrap();
            mask.save(dir.join(format!("{category}_{defect}_mask.png")))
                .unwrap();
            let mut outlined = s.image.clone();
            for (x, yy, m) in mask.enumerate_pixels() {
                let edge = m[0] == 255
                    && [(-1i32, 0i32), (1, 0), (0, -1), (0, 1)]
                        .iter()
                        .any(|(dx, dy)| {
                            let (nx, ny) = (x as i32 + dx, yy as i32 + dy);
                            nx < 0
                                || ny < 0
                                || nx >= size as i32
                                || ny >= size as i32
                                || mask.get_pixel(nx as u32, ny as u32)[0] == 0
                        });
                if edge {
                    outlined.put_pixel(x, yy, Rgb([255, 0, 0]));
                }
            }
            let x = (3 + d as u32) * (size + gap);
            imageops::replace(&mut sheet, &s.image, x as i64, y as i64);
            imageops::replace(&mut sheet, &outlined, x as i64, (y + size + gap) as i64);
        }
    }
    sheet.save(dir.join("sheet.png")).unwrap();

    // Per category: a row of normal images, then a row per defect, several seeds each.
    let cols = 6u32;
    for (c, category) in SYNTHETIC_CATEGORIES.iter().enumerate() {
        let rows = 1 + SYNTHETIC_DEFECTS.len() as u32;
        let mut sheet = RgbImage::from_pixel(
            cols * (size + gap),
            rows * (size + gap),
            Rgb([255, 255, 255]),
        );
        for row in 0..rows {
            for col in 0..cols {
                let seed = 1000 * c as u64 + 10 * row as u64 + col as u64;
                let defect = (row > 0).then(|| SYNTHETIC_DEFECTS[row as usize - 1]);
                let s = render_sample(category, defect, size, seed).unwrap();
                let (x, y) = (col * (size + gap), row * (size + gap));
                imageops::replace(&mut sheet, &s.image, x as i64, y as i64);
            }
        }
        sheet
            .save(dir.join(format!("sheet_{category}.png")))
            .unwrap();
    }
}

#[test]
#[ignore = "generates the default (quickstart) spec into /tmp/memad-preview/default and prints the time"]
fn generate_default_spec() {
    let root = std::path::Path::new("/tmp/memad-preview/default");
    let spec = memad_data::SyntheticSpec::default();
    let report = memad_data::generate(root, &spec).unwrap();
    println!(
        "{} images, {} masks in {:.2?} ({} rayon threads)",
        report.images,
        report.masks,
        report.elapsed,
        rayon::current_num_threads()
    );
    // Per category: the train and test good images, then `test_per_defect` of each defect,
    // each of those with a mask.
    let per_category = spec.train_per_category
        + spec.test_good_per_category
        + spec.defects.len() * spec.test_per_defect;
    assert_eq!(report.images, spec.categories.len() * per_category);
    assert_eq!(report.images, 3 * (60 + 10 + 5 * SYNTHETIC_DEFECTS.len()));
    assert_eq!(
        report.masks,
        spec.categories.len() * spec.defects.len() * spec.test_per_defect
    );
}
