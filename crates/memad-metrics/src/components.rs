//! 8-connected components of a binary mask (what `scipy.ndimage.label` computes with a 3x3
//! structuring element of ones, as the MVTec AD evaluation code uses). `O(h*w)`.

/// Connected components of one `h x w` mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Components {
    /// Per pixel, row-major: `0` for background, `1..=sizes.len()` for a component.
    pub labels: Vec<u32>,
    /// Pixel count of component `c` at index `c - 1`.
    pub sizes: Vec<u32>,
}

/// Labels the 8-connected components of the `true` pixels of `mask` (`h * w`, row-major),
/// numbered in raster order of their first pixel.
///
/// # Panics
/// If `mask.len() != h * w` (callers check shapes first).
pub fn connected_components_8(mask: &[bool], h: usize, w: usize) -> Components {
    assert_eq!(mask.len(), h * w, "mask is not h * w");
    let mut labels = vec![0u32; mask.len()];
    let mut sizes = Vec::new();
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || labels[start] != 0 {
            continue;
        }
        let label = sizes.len() as u32 + 1;
        let mut size = 0u32;
        labels[start] = label;
        stack.push(start);
        while let Some(p) = stack.pop() {
            size += 1;
            let (y, x) = (p / w, p % w);
            for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    let q = ny * w + nx;
                    if mask[q] && labels[q] == 0 {
                        labels[q] = label;
                        stack.push(q);
                    }
                }
            }
        }
        sizes.push(size);
    }
    Components { labels, sizes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(rows: &[&str]) -> (Vec<bool>, usize, usize) {
        let mask = rows
            .iter()
            .flat_map(|r| r.chars().map(|c| c == '#'))
            .collect();
        (mask, rows.len(), rows[0].len())
    }

    #[test]
    fn diagonal_neighbours_connect() {
        let (mask, h, w) = parse(&[
            "#...#", //
            ".#..#", "..#..", ".....", "##..#",
        ]);
        let c = connected_components_8(&mask, h, w);
        assert_eq!(c.sizes, vec![3, 2, 2, 1]);
        assert_eq!(&c.labels[..5], &[1, 0, 0, 0, 2]);
        assert_eq!(&c.labels[20..], &[3, 3, 0, 0, 4]);
    }

    #[test]
    fn u_shape_is_one_component_and_empty_mask_has_none() {
        let (mask, h, w) = parse(&["#.#", "#.#", "###"]);
        assert_eq!(connected_components_8(&mask, h, w).sizes, vec![7]);
        let c = connected_components_8(&[false; 6], 2, 3);
        assert!(c.sizes.is_empty() && c.labels.iter().all(|&l| l == 0));
        assert_eq!(connected_components_8(&[], 0, 0).sizes, Vec::<u32>::new());
    }
}
