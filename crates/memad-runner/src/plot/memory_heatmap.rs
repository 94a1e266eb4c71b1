//! Memory-usage heat maps (`memory_<category>.{png,svg}`, `memory_all.{png,svg}`): each
//! memory item's share of the addressing weight over the test images (see the module doc
//! of `plot`).
use super::*;

/// One row of `memory/<category>.csv`: the share of one memory item (`None`: the test set
/// has no sample of that label, or no read of its samples put weight on any item, as when
/// MemAE's hard shrinkage empties every read; `evaluate::write_memory_usage` leaves both
/// empty, and [`CategoryUsage::samples`] tells them apart).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct UsageRow {
    pub memory: String,
    pub item: usize,
    pub normal: Option<f64>,
    pub anomalous: Option<f64>,
}

/// One category's memory usage, rows in file order.
#[derive(Debug, Clone)]
pub struct CategoryUsage {
    pub category: String,
    pub rows: Vec<UsageRow>,
    /// `(normal, anomalous)` test samples of the category, from its `scores/<category>.csv`
    /// (the samples whose reads the shares sum; [`count_samples`]); `None` without it.
    pub samples: Option<(usize, usize)>,
}

/// A heat-map row: each item's share, or why there is none.
#[derive(Debug, Clone, PartialEq)]
enum RowShares {
    Shares(Vec<f64>),
    /// The test set has no sample of this label.
    NoSample,
    /// This many samples were scored, and no read of theirs put weight on any item (every
    /// read emptied, as MemAE's hard shrinkage does when every weight is under its
    /// threshold).
    NoWeight(usize),
    /// No shares, and no scores file to tell whether there were samples.
    Unknown,
}

impl RowShares {
    fn shares(&self) -> Option<&Vec<f64>> {
        match self {
            RowShares::Shares(s) => Some(s),
            _ => None,
        }
    }

    /// What a row without shares says instead.
    fn why_empty(&self) -> String {
        match self {
            RowShares::Shares(_) => String::new(),
            RowShares::NoSample => "no test image with this label".into(),
            RowShares::NoWeight(n) => format!(
                "no weight on any item: every read of its {n} test image{} was emptied \
                 (e.g. by the hard shrinkage)",
                if *n == 1 { "" } else { "s" }
            ),
            RowShares::Unknown => "no weight on any item, or no test image with this label".into(),
        }
    }
}

/// One heat map: a row per label, a column per item (`items` of them, whether or not any
/// row has shares).
#[derive(Debug, Clone, PartialEq)]
struct HeatPanel {
    memory: String,
    items: usize,
    rows: Vec<(String, RowShares)>,
}

/// `memory/*.csv` of a run, sorted by category (empty without the folder).
///
/// # Errors
/// An unreadable file, one without rows, an item missing or listed twice, a share outside
/// [0, 1] ([`check_shares`]).
pub fn read_usage_dir(dir: &Path) -> anyhow::Result<Vec<CategoryUsage>> {
    let mut found = Vec::new();
    if !dir.is_dir() {
        return Ok(found);
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "csv") {
            let category = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let rows = csv::Reader::from_path(&path)
                .and_then(|mut r| r.deserialize().collect::<Result<Vec<UsageRow>, _>>())
                .with_context(|| format!("reading {}", path.display()))?;
            check_shares(&rows, &path)?;
            found.push(CategoryUsage {
                category,
                rows,
                samples: None,
            });
        }
    }
    found.sort_by(|a, b| a.category.cmp(&b.category));
    Ok(found)
}

/// A usage file has a row per memory item (items `0..n` of each memory, each once: a heat
/// map's columns are the rows in item order), and each share, a part of a sum of addressing
/// weights, lies in [0, 1] (drawn, a NaN would read as 0%, a negative share as below 0%).
fn check_shares(rows: &[UsageRow], path: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        !rows.is_empty(),
        "{}: no rows (one per memory item)",
        path.display()
    );
    for (memory, items) in memories(rows) {
        if let Some(i) = (0..items.len()).find(|&i| items[i].item != i) {
            let gap = match items[i].item < i {
                true => format!("item {} is listed twice", items[i].item),
                false => format!("item {i} is missing"),
            };
            anyhow::bail!(
                "{}: memory `{memory}` has {} rows, {gap} (one row per item 0..{})",
                path.display(),
                items.len(),
                items.len()
            );
        }
    }
    for (i, r) in rows.iter().enumerate() {
        for (label, share) in [("normal", r.normal), ("anomalous", r.anomalous)] {
            if let Some(v) = share.filter(|v| !(0.0..=1.0).contains(v)) {
                anyhow::bail!(
                    "{} row {}: {label} share {v:?} is not in [0, 1]",
                    path.display(),
                    i + 2
                );
            }
        }
    }
    Ok(())
}

/// Sets each category's [`CategoryUsage::samples`] from its scores (one row per test
/// sample, as `evaluate::write_scores` writes them, labelled as the usage sums split them).
pub fn count_samples(usage: &mut [CategoryUsage], scores: &[Scores]) {
    for u in usage {
        u.samples = (scores.iter().find(|s| s.category == u.category)).map(|s| {
            let anomalous = s.labels.iter().filter(|&&l| l).count();
            (s.labels.len() - anomalous, anomalous)
        });
    }
}

/// The memories of `rows` in file order, each with its rows in item order.
fn memories(rows: &[UsageRow]) -> Vec<(String, Vec<&UsageRow>)> {
    let mut out: Vec<(String, Vec<&UsageRow>)> = Vec::new();
    for r in rows {
        match out.iter_mut().find(|(m, _)| *m == r.memory) {
            Some((_, items)) => items.push(r),
            None => out.push((r.memory.clone(), vec![r])),
        }
    }
    for (_, items) in &mut out {
        items.sort_by_key(|r| r.item);
    }
    out
}

/// Shares of one column; when any item has none, why, from the `samples` of that label
/// (`None`: unknown).
fn column(
    items: &[&UsageRow],
    get: impl Fn(&UsageRow) -> Option<f64>,
    samples: Option<usize>,
) -> RowShares {
    match items.iter().map(|r| get(r)).collect::<Option<Vec<f64>>>() {
        Some(shares) => RowShares::Shares(shares),
        None => match samples {
            Some(0) => RowShares::NoSample,
            Some(n) => RowShares::NoWeight(n),
            None => RowShares::Unknown,
        },
    }
}

/// One category's panels: a panel per memory, rows normal / anomalous.
fn category_panels(usage: &CategoryUsage) -> Vec<HeatPanel> {
    let (normal, anomalous) = (usage.samples.map(|s| s.0), usage.samples.map(|s| s.1));
    memories(&usage.rows)
        .into_iter()
        .map(|(memory, items)| HeatPanel {
            memory,
            items: items.len(),
            rows: vec![
                ("normal".into(), column(&items, |r| r.normal, normal)),
                (
                    "anomalous".into(),
                    column(&items, |r| r.anomalous, anomalous),
                ),
            ],
        })
        .collect()
}

/// A multi-class run's panels: a panel per memory, a row per category (normal test images).
fn class_panels(all: &[CategoryUsage]) -> Vec<HeatPanel> {
    let Some(first) = all.first() else {
        return Vec::new();
    };
    memories(&first.rows)
        .into_iter()
        .map(|(memory, items)| HeatPanel {
            items: items.len(),
            rows: all
                .iter()
                .map(|u| {
                    let items = memories(&u.rows)
                        .into_iter()
                        .find(|(m, _)| *m == memory)
                        .map_or(RowShares::Unknown, |(_, items)| {
                            column(&items, |r| r.normal, u.samples.map(|s| s.0))
                        });
                    (u.category.clone(), items)
                })
                .collect(),
            memory,
        })
        .collect()
}

/// `memory_<category>.{png,svg}` per category and, for a multi-class run,
/// `memory_all.{png,svg}` (a row per category). `per_class`: the items each class reads
/// (MDD-Net's `method.memory.items_per_class`: a class reads only its own items), which
/// sets the uniform share.
pub(super) fn plot_memory_usage(
    all: &[CategoryUsage],
    multi_class: bool,
    per_class: Option<usize>,
    out: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for usage in all {
        let title = format!(
            "{}: memory usage (share of the addressing weight per item, test images)",
            usage.category
        );
        let panels = category_panels(usage);
        written.extend(plot_heat_panels(
            &panels,
            &title,
            per_class,
            &out.join(format!("memory_{}", usage.category)),
        )?);
    }
    if multi_class && all.len() > 1 {
        let title = "memory usage per category (one model; normal test images)";
        written.extend(plot_heat_panels(
            &class_panels(all),
            title,
            per_class,
            &out.join("memory_all"),
        )?);
    }
    Ok(written)
}

fn plot_heat_panels(
    panels: &[HeatPanel],
    title: &str,
    per_class: Option<usize>,
    stem: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let heights: Vec<u32> = panels.iter().map(|p| heat_height(p.rows.len())).collect();
    let size = (1100, 40 + heights.iter().sum::<u32>());
    png_and_svg!(stem, size, |root| draw_heat_panels(
        root, panels, &heights, title, per_class
    ))
}

/// Pixels of a panel with `rows` rows.
fn heat_height(rows: usize) -> u32 {
    110 + 34 * rows.max(2) as u32
}

/// matplotlib's viridis at `t` in `[0, 1]` (linear between 9 of its stops).
fn viridis(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 9] = [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ];
    let x = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// About `target` ticks on `[0, hi]` at 1, 2 or 5 times a power of ten.
fn nice_ticks(hi: f64, target: usize) -> Vec<f64> {
    if hi <= 0.0 {
        return vec![0.0];
    }
    let raw = hi / target.max(1) as f64;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * power);
    (0..)
        .map(|k| k as f64 * step)
        .take_while(|&v| v <= hi * (1.0 + 1e-9))
        .collect()
}

/// Item ticks: every item up to 25, else every 1/2/5 x 10^k-th.
fn item_ticks(slots: usize) -> Vec<usize> {
    let step = if slots <= 25 {
        1
    } else {
        nice_ticks(slots as f64, 20)
            .get(1)
            .map_or(1, |&s| s as usize)
    };
    (0..slots).step_by(step.max(1)).collect()
}

/// `share` in percent with two significant digits below 10% (0.05%, 0.12%, 5%, 5.5%),
/// whole above, trailing zeros dropped.
fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p == 0.0 || !p.is_finite() {
        return "0%".into();
    }
    let decimals = if p >= 10.0 {
        0
    } else {
        (1.0 - p.log10().floor()).max(0.0) as usize
    };
    let text = format!("{p:.decimals$}");
    let text = match text.contains('.') {
        true => text.trim_end_matches('0').trim_end_matches('.'),
        false => &text,
    };
    format!("{text}%")
}

fn draw_heat_panels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &[HeatPanel],
    heights: &[u32],
    title: &str,
    per_class: Option<usize>,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(drawing)?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(drawing)?;
    let mut area = root;
    for (panel, &h) in panels.iter().zip(heights) {
        let (this, rest) = area.split_vertically(h);
        draw_heat_panel(&this, panel, per_class)?;
        area = rest;
    }
    Ok(())
}

/// A heat map (rows x items, colour = share on the panel's [`ShareScale`]) and its
/// colour bar, the uniform share marked on the bar: `1 / items`, or `1 / per_class` where
/// each class reads only its own `per_class` items (fewer than the panel's). With more
/// items than half the map's pixel columns, items are drawn in bins of about 2 px showing
/// the largest share of their items ([`bin_max`]), so a heavy item always shows.
fn draw_heat_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &HeatPanel,
    per_class: Option<usize>,
) -> anyhow::Result<()> {
    // The panel's items, whether or not any row has shares (every read emptied leaves
    // none).
    let slots = panel.items;
    let scale = ShareScale::of(
        panel
            .rows
            .iter()
            .filter_map(|(_, r)| r.shares())
            .flatten()
            .copied(),
    );
    let (map_area, bar_area) = area.split_horizontally(area.dim_in_pixel().0 - 130);
    let n = panel.rows.len();
    let label_width = panel.rows.iter().map(|(l, _)| l.len()).max().unwrap_or(4) as u32 * 9 + 16;
    let items = item_ticks(slots);
    // The map's width in pixels: the area less the 10 px margins and the row labels.
    let map_px = map_area.dim_in_pixel().0.saturating_sub(20 + label_width) as usize;
    let bins = slots.min(map_px / 2).max(1);
    let binned = bins < slots;
    let readable = per_class.filter(|&k| k > 0 && k < slots);
    let uniform = 1.0 / readable.unwrap_or(slots).max(1) as f64;
    let mut caption = format!("{} ({slots} items", panel.memory);
    if let Some(k) = readable {
        caption += &format!(", {k} per class");
    }
    if binned {
        caption += &format!(
            ", about {} per bin, coloured by its largest share",
            slots.div_ceil(bins)
        );
    }
    caption += &format!(
        "; uniform use{} = {} each, the white line on the colour bar)",
        if readable.is_some() {
            " of a class's own items"
        } else {
            ""
        },
        percent(uniform)
    );
    let mut chart = ChartBuilder::on(&map_area)
        .caption(caption, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(42)
        .y_label_area_size(label_width)
        .build_cartesian_2d(
            KeyAxis {
                range: 0.0..slots.max(1) as f64,
                keys: items.iter().map(|&i| i as f64 + 0.5).collect(),
                labels: items.iter().map(|i| i.to_string()).collect(),
            },
            KeyAxis {
                range: 0.0..n as f64,
                keys: (0..n).map(|r| (n - 1 - r) as f64 + 0.5).collect(),
                labels: panel.rows.iter().map(|(l, _)| l.clone()).collect(),
            },
        )
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("memory item")
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(drawing)?;
    // Cells wide enough for a label get their share printed.
    let cell_px = chart.plotting_area().dim_in_pixel().0 as f64 / slots.max(1) as f64;
    for (r, (_, shares)) in panel.rows.iter().enumerate() {
        let y = (n - 1 - r) as f64;
        match shares {
            RowShares::Shares(shares) => {
                chart
                    .draw_series(bin_max(shares, bins).into_iter().map(|(a, b, s)| {
                        Rectangle::new(
                            [(a as f64, y), (b as f64, y + 1.0)],
                            viridis(scale.position(s)).filled(),
                        )
                    }))
                    .map_err(drawing)?;
                if cell_px >= 44.0 {
                    chart
                        .draw_series(shares.iter().enumerate().map(|(i, &s)| {
                            let ink = if scale.position(s) > 0.6 {
                                BLACK
                            } else {
                                WHITE
                            };
                            Text::new(
                                percent(s),
                                (i as f64 + 0.5, y + 0.5),
                                ("sans-serif", 12)
                                    .into_font()
                                    .color(&ink)
                                    .pos(Pos::new(HPos::Center, VPos::Center)),
                            )
                        }))
                        .map_err(drawing)?;
                }
            }
            empty => {
                let grey = RGBColor(225, 225, 225);
                chart
                    .draw_series([Rectangle::new(
                        [(0.0, y), (slots as f64, y + 1.0)],
                        grey.filled(),
                    )])
                    .map_err(drawing)?;
                chart
                    .draw_series([Text::new(
                        empty.why_empty(),
                        (slots as f64 / 2.0, y + 0.5),
                        ("sans-serif", 13)
                            .into_font()
                            .color(&BLACK)
                            .pos(Pos::new(HPos::Center, VPos::Center)),
                    )])
                    .map_err(drawing)?;
            }
        }
    }
    // Colour bar over the scale's range (log10 of the share on a log scale), ticks in
    // percent, the uniform share as a line.
    let (bar_lo, bar_hi) = scale.bar_range();
    let ticks = scale.ticks();
    let mut bar = ChartBuilder::on(&bar_area)
        .margin_top(36)
        .margin_bottom(52)
        .margin_right(8)
        .y_label_area_size(62)
        .build_cartesian_2d(
            0.0..1.0,
            KeyAxis {
                range: bar_lo..bar_hi,
                keys: ticks.iter().map(|&t| scale.bar_y(t)).collect(),
                labels: ticks.iter().map(|&t| percent(t)).collect(),
            },
        )
        .map_err(drawing)?;
    let what = if binned { "share (bin max)" } else { "share" };
    let desc = match scale {
        ShareScale::Linear { .. } => what.to_string(),
        ShareScale::Log { .. } => format!("{what}, log scale"),
    };
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc(desc)
        .label_style(("sans-serif", 12))
        .axis_desc_style(("sans-serif", 13))
        .draw()
        .map_err(drawing)?;
    let steps = 64;
    let at = |t: f64| bar_lo + t * (bar_hi - bar_lo);
    bar.draw_series((0..steps).map(|k| {
        let (a, b) = (k as f64 / steps as f64, (k + 1) as f64 / steps as f64);
        Rectangle::new(
            [(0.0, at(a)), (1.0, at(b))],
            viridis((a + b) / 2.0).filled(),
        )
    }))
    .map_err(drawing)?;
    let uniform_y = scale.bar_y(uniform);
    if (bar_lo..=bar_hi).contains(&uniform_y) {
        bar.draw_series([PathElement::new(
            vec![(0.0, uniform_y), (1.0, uniform_y)],
            WHITE.stroke_width(2),
        )])
        .map_err(drawing)?;
    }
    Ok(())
}

/// A heat map's colour scale. Linear from 0 to the largest share; logarithmic when the
/// non-zero shares span more than two decades (one item taking most of the weight would
/// leave every other item the colour of zero), over at most four decades below the
/// largest share, smaller shares (and zero) at its bottom colour.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ShareScale {
    Linear { hi: f64 },
    Log { lo: f64, hi: f64 },
}

impl ShareScale {
    /// Decades a log scale spans at most.
    const DECADES: f64 = 4.0;

    fn of(shares: impl Iterator<Item = f64>) -> Self {
        let (lo, hi) = shares
            .filter(|s| s.is_finite() && *s > 0.0)
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), s| {
                (lo.min(s), hi.max(s))
            });
        if hi <= 0.0 {
            ShareScale::Linear { hi: 1.0 }
        } else if hi > 100.0 * lo {
            let lo = lo.max(hi / 10f64.powf(Self::DECADES));
            ShareScale::Log { lo, hi }
        } else {
            ShareScale::Linear { hi }
        }
    }

    /// The colour position of `share` in `[0, 1]`.
    fn position(&self, share: f64) -> f64 {
        match *self {
            ShareScale::Linear { hi } => (share / hi).clamp(0.0, 1.0),
            ShareScale::Log { lo, hi } if share > 0.0 => {
                ((share.log10() - lo.log10()) / (hi.log10() - lo.log10())).clamp(0.0, 1.0)
            }
            ShareScale::Log { .. } => 0.0,
        }
    }

    /// The colour bar's y of `share`: the share, or its log10 on a log scale.
    fn bar_y(&self, share: f64) -> f64 {
        match self {
            ShareScale::Linear { .. } => share,
            ShareScale::Log { .. } => share.max(f64::MIN_POSITIVE).log10(),
        }
    }

    fn bar_range(&self) -> (f64, f64) {
        match *self {
            ShareScale::Linear { hi } => (0.0, hi),
            ShareScale::Log { lo, hi } => (lo.log10(), hi.log10()),
        }
    }

    /// The colour bar's tick shares: 1, 2 and 5 times the powers of ten on a log scale
    /// (only the powers when there are at least three of them).
    fn ticks(&self) -> Vec<f64> {
        match *self {
            ShareScale::Linear { hi } => nice_ticks(hi, 5),
            ShareScale::Log { lo, hi } => {
                let inside = |v: &f64| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9);
                let decades = lo.log10().floor() as i32..=hi.log10().ceil() as i32;
                let powers: Vec<f64> = decades
                    .clone()
                    .map(|k| 10f64.powi(k))
                    .filter(inside)
                    .collect();
                if powers.len() >= 3 {
                    return powers;
                }
                decades
                    .flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k)))
                    .filter(inside)
                    .collect()
            }
        }
    }
}

/// `shares` in `bins` bins of consecutive items: `(first item, end item, largest share)`
/// per bin, one bin per item when `bins` is the number of items.
fn bin_max(shares: &[f64], bins: usize) -> Vec<(usize, usize, f64)> {
    let n = shares.len();
    (0..bins.min(n))
        .map(|b| {
            let (start, end) = (b * n / bins.min(n), (b + 1) * n / bins.min(n));
            let max = shares[start..end].iter().fold(0.0f64, |m, &v| m.max(v));
            (start, end, max)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percents_keep_two_significant_digits() {
        let shown: Vec<String> = [0.0, 0.0005, 0.0002, 0.0006, 0.00123, 0.05, 0.055, 0.1, 0.78]
            .iter()
            .map(|&s| percent(s))
            .collect();
        assert_eq!(
            shown,
            ["0%", "0.05%", "0.02%", "0.06%", "0.12%", "5%", "5.5%", "10%", "78%"]
        );
    }

    #[test]
    fn usage_files_without_rows_with_shares_outside_0_1_or_items_amiss_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        let header = "memory,item,normal,anomalous\n";
        for (rows, want) in [
            ("", ": no rows (one per memory item)"),
            (
                "memory,0,0.5,NaN\n",
                " row 2: anomalous share NaN is not in [0, 1]",
            ),
            (
                "memory,0,0.5,\nmemory,1,inf,\n",
                " row 3: normal share inf is not in [0, 1]",
            ),
            (
                "memory,0,-5,0.5\n",
                " row 2: normal share -5.0 is not in [0, 1]",
            ),
            (
                "memory,0,0.5,1e30\n",
                " row 2: anomalous share 1e30 is not in [0, 1]",
            ),
            (
                "memory,0,0.5,\nmemory,0,0.5,\n",
                ": memory `memory` has 2 rows, item 0 is listed twice (one row per item 0..2)",
            ),
            (
                "memory,0,0.5,\nscale2,0,1,\nmemory,2,0.5,\n",
                ": memory `memory` has 2 rows, item 1 is missing (one row per item 0..2)",
            ),
        ] {
            std::fs::write(&path, format!("{header}{rows}")).unwrap();
            let err = format!("{:#}", read_usage_dir(dir.path()).unwrap_err());
            assert_eq!(err, format!("{}{want}", path.display()));
        }
        // An empty file, as a header-only one.
        std::fs::write(&path, "").unwrap();
        let err = format!("{:#}", read_usage_dir(dir.path()).unwrap_err());
        assert!(
            err.ends_with("a.csv: no rows (one per memory item)"),
            "{err}"
        );
        // The shares a run writes: 0 and 1 included, empty where there is none.
        std::fs::write(&path, format!("{header}memory,0,0,\nmemory,1,1,\n")).unwrap();
        assert_eq!(read_usage_dir(dir.path()).unwrap()[0].rows.len(), 2);
    }

    #[test]
    fn memory_usage_panels_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let memory = dir.path().join("memory");
        std::fs::create_dir_all(&memory).unwrap();
        // `b` has no anomalous test image: its anomalous row is empty.
        std::fs::write(
            memory.join("a.csv"),
            "memory,item,normal,anomalous\nmemory,0,0.75,0.5\nmemory,1,0.25,0.5\n\
             scale2,1,0.4,0.1\nscale2,0,0.6,0.9\n",
        )
        .unwrap();
        std::fs::write(
            memory.join("b.csv"),
            "memory,item,normal,anomalous\nmemory,0,0.1,\nmemory,1,0.9,\n\
             scale2,0,1.0,\nscale2,1,0.0,\n",
        )
        .unwrap();
        let mut usage = read_usage_dir(&memory).unwrap();
        assert_eq!(usage[0].category, "a");
        assert_eq!(usage[1].samples, None);
        assert_eq!(
            category_panels(&usage[1])[0].rows[1],
            ("anomalous".into(), RowShares::Unknown)
        );
        usage[1].samples = Some((3, 0));
        let panels = category_panels(&usage[0]);
        assert_eq!(panels.len(), 2);
        assert_eq!(panels[1].memory, "scale2");
        // Items in item order, whatever the file order.
        assert_eq!(panels[1].items, 2);
        assert_eq!(
            panels[1].rows[0],
            ("normal".into(), RowShares::Shares(vec![0.6, 0.4]))
        );
        assert_eq!(
            category_panels(&usage[1])[0].rows[1],
            ("anomalous".into(), RowShares::NoSample)
        );
        let classes = class_panels(&usage);
        assert_eq!(
            classes[0].rows,
            [
                ("a".to_string(), RowShares::Shares(vec![0.75, 0.25])),
                ("b".to_string(), RowShares::Shares(vec![0.1, 0.9]))
            ]
        );
        register_fonts();
        let out = dir.path().join("plots");
        std::fs::create_dir_all(&out).unwrap();
        let files = plot_memory_usage(&usage, true, None, &out).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "memory_a.png",
                "memory_a.svg",
                "memory_b.png",
                "memory_b.svg",
                "memory_all.png",
                "memory_all.svg"
            ]
        );
        let svg = std::fs::read_to_string(out.join("memory_a.svg")).unwrap();
        assert!(
            svg.contains("anomalous") && svg.contains("75%"),
            "labels and shares"
        );
        let svg = std::fs::read_to_string(out.join("memory_b.svg")).unwrap();
        assert!(svg.contains("no test image with this label"), "{svg}");
    }

    /// MemAE's hard shrinkage can empty every read (`memad run
    /// experiments/memae_ped2_cpu.toml --smoke`): `memory/<category>.csv` then has its 2000
    /// items with no share in either column. The figure keeps the item count and says that
    /// the reads were emptied, not that the test set has no such image.
    #[test]
    fn every_read_emptied_is_no_weight_not_no_image() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path();
        std::fs::create_dir_all(run_dir.join("memory")).unwrap();
        std::fs::create_dir_all(run_dir.join("scores")).unwrap();
        let mut csv = String::from("memory,item,normal,anomalous\n");
        for i in 0..2000 {
            csv += &format!("memory,{i},,\n");
        }
        std::fs::write(run_dir.join("memory/ped2.csv"), csv).unwrap();
        // 3 normal and 2 anomalous test frames.
        let mut scores = String::from("image,video,defect,label,score\n");
        for (k, label) in [0, 0, 1, 1, 0].into_iter().enumerate() {
            scores += &format!("/d/01/{k:03}.jpg,01,x,{label},0.{k}\n");
        }
        std::fs::write(run_dir.join("scores/ped2.csv"), scores).unwrap();
        let mut usage = read_usage_dir(&run_dir.join("memory")).unwrap();
        count_samples(
            &mut usage,
            &[super::read_scores(&run_dir.join("scores/ped2.csv")).unwrap()],
        );
        assert_eq!(usage[0].samples, Some((3, 2)));
        let panels = category_panels(&usage[0]);
        assert_eq!(panels[0].items, 2000);
        assert_eq!(
            panels[0].rows,
            [
                ("normal".to_string(), RowShares::NoWeight(3)),
                ("anomalous".to_string(), RowShares::NoWeight(2))
            ]
        );
        // Through `memad plot`: the figure's text.
        let out = run_dir.join("plots");
        let written = super::run(run_dir, Some(&out)).unwrap();
        assert!(
            written.contains(&out.join("memory_ped2.svg")),
            "{written:?}"
        );
        let svg = std::fs::read_to_string(out.join("memory_ped2.svg")).unwrap();
        assert!(
            svg.contains("memory (2000 items") && svg.contains("uniform use = 0.05% each"),
            "{svg}"
        );
        assert!(!svg.contains("(0 items"), "{svg}");
        assert!(!svg.contains("no test image with this label"), "{svg}");
        for n in ["3 test images", "2 test images"] {
            assert!(
                svg.contains(&format!(
                    "no weight on any item: every read of its {n} was emptied"
                )),
                "{n}: {svg}"
            );
        }
    }

    #[test]
    fn heat_map_ticks_and_colours() {
        let close = |got: Vec<f64>, want: &[f64]| {
            got.len() == want.len() && got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12)
        };
        assert!(close(nice_ticks(0.3, 4), &[0.0, 0.1, 0.2, 0.3]));
        assert!(close(nice_ticks(0.07, 4), &[0.0, 0.02, 0.04, 0.06]));
        assert_eq!(item_ticks(4), [0, 1, 2, 3]);
        assert_eq!(item_ticks(100), (0..100).step_by(5).collect::<Vec<_>>());
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(253, 231, 37));
        assert_eq!(viridis(2.0), viridis(1.0));
    }

    #[test]
    fn heat_map_scale_turns_log_when_one_item_dominates() {
        // Shares within two decades: linear from 0 to the largest.
        let linear = ShareScale::of([0.0, 0.2, 0.5, 0.3].into_iter());
        assert_eq!(linear, ShareScale::Linear { hi: 0.5 });
        assert!((linear.position(0.25) - 0.5).abs() < 1e-12);
        // One item at 78%, the rest near 0.1%: log, so a 1% item is not the colour of zero.
        let log = ShareScale::of([0.78, 0.01, 0.0012, 0.0].into_iter());
        assert_eq!(
            log,
            ShareScale::Log {
                lo: 0.0012,
                hi: 0.78
            }
        );
        assert!(log.position(0.01) > 0.3, "{}", log.position(0.01));
        assert_eq!(log.position(0.0), 0.0);
        assert_eq!(log.position(0.78), 1.0);
        assert_eq!(
            log.ticks().iter().map(|&t| percent(t)).collect::<Vec<_>>(),
            ["0.2%", "0.5%", "1%", "2%", "5%", "10%", "20%", "50%"]
        );
        // At most four decades below the largest share.
        let deep = ShareScale::of([1.0, 1e-9].into_iter());
        assert_eq!(deep, ShareScale::Log { lo: 1e-4, hi: 1.0 });
        assert_eq!(deep.ticks(), [1e-4, 1e-3, 1e-2, 1e-1, 1.0]);
        assert_eq!(deep.position(1e-9), 0.0);
        assert_eq!(
            ShareScale::of(std::iter::empty()),
            ShareScale::Linear { hi: 1.0 }
        );
    }

    #[test]
    fn heavy_items_survive_binning() {
        let mut shares = vec![0.0; 2000];
        shares[682] = 0.5;
        shares[1999] = 0.2;
        let bins = bin_max(&shares, 400);
        assert_eq!(bins.len(), 400);
        assert_eq!(bins[0].0, 0);
        assert_eq!(bins[399].1, 2000);
        assert!(
            bins.windows(2).all(|w| w[0].1 == w[1].0),
            "bins tile the items"
        );
        let heavy: Vec<f64> = bins.iter().map(|b| b.2).filter(|&m| m > 0.0).collect();
        assert_eq!(heavy, [0.5, 0.2]);
        // Fewer items than bins: one bin per item.
        assert_eq!(bin_max(&[0.1, 0.9], 5), [(0, 1, 0.1), (1, 2, 0.9)]);
    }
}
