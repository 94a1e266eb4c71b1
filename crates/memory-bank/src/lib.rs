//! memory-bank: a memory of patch features fitted once, PatchCore's memory bank
//! (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022;
//! reference code: github.com/amazon-science/patchcore-inspection, `sampler.py`, `common.py`).
//!
//! [`PatchBank`] is the third kind of [`memad_core::Memory`], fitted once:
//! - `update(query [N, D])` appends the (detached) features to those collected so far, on the
//!   query's device;
//! - `finalize` replaces the bank by a coreset of everything collected since the last
//!   `finalize` (see below);
//! - `read(query [N, D])` returns, for each query, the Euclidean distance to its nearest bank
//!   item (`distance [N]`) and that item (`output [N, D]`); [`PatchBank::k_nearest`] gives the
//!   `k` nearest (PatchCore's reweighting needs them);
//! - `state()`/`load_state()` store the bank as the tensor `bank` `[M, D]`.
//!
//! # Coreset (paper Sec. 3.2, Alg. 1)
//! With `psi` a random linear projection `R^D -> R^d` (Johnson-Lindenstrauss, entries
//! `N(0, 1/d)`, `d = projection_dim`; the identity when `projection_dim` is 0 or `>= D`):
//!
//! ```text
//! M_C = { m_0 }                                  m_0 drawn from the seed
//! while |M_C| < int(N * ratio):
//!     M_C = M_C  u  { argmax_{m in M} min_{n in M_C} || psi(m) - psi(n) ||_2 }
//! ```
//!
//! `start = "approximate"` starts as the official `ApproximateGreedyCoresetSampler` instead:
//! with `S` [`APPROXIMATE_START_POINTS`] rows drawn from the seed (not selected), every row
//! begins at `a(m) = mean_{s in S} ||psi(m) - psi(s)||_2`, and each step selects
//! `argmax_{m in M} min(a(m), min_{n in M_C} ||psi(m) - psi(n)||_2)`: the first row selected is
//! the farthest on average from `S`, and `a` also caps the distances of every later step.
//!
//! Greedy k-center: each step adds the item farthest from the coreset, which greedily shrinks
//! the coverage radius `max_{m in M} min_{n in M_C} ||psi(m) - psi(n)||` (the minimax facility
//! location objective; greedy is a 2-approximation of the optimum). The bank keeps the
//! *unprojected* selected features. `coreset_ratio = 1` keeps every feature (no selection).
//! Each step's distance update is computed in row chunks of at most [`CHUNK_ELEMENTS`]
//! elements, so memory stays `O(N d)` (no `N x N` matrix).
//!
//! # Deviations from the reference code
//! - Start: by default one seeded random item, kept in the coreset, as Alg. 1 (and current
//!   anomalib; its older versions seeded the distances with that row without keeping it); `start =
//!   "approximate"` is the official code's (above), which the paper files set. Its start rows
//!   are memad's seeded draw, not numpy's.
//! - Size: at least one item where the official `int(N * ratio)` keeps none.
//! - Projection: a dense Gaussian matrix from memad's own seeded generator (the official code:
//!   an untrained `torch.nn.Linear`, i.e. uniform Kaiming entries; anomalib: a sparse random
//!   projection). Any Johnson-Lindenstrauss projection serves; the seed alone fixes the
//!   selection, whatever the device or libtorch's global generator.
//! - Distances are Euclidean as in the paper (the official code's faiss `IndexFlatL2` returns
//!   squared distances: PatchCore's `patch_distance = "squared"` squares them). Neighbours are found with `|q|^2 - 2 q.b + |b|^2` over chunks of
//!   queries and bank items, then their distances are recomputed exactly as `||q - b||`.
use memad_core::{ConfigError, CoreError, Memory, MemoryRead, Progress, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Elements of the largest temporary one chunk of work creates (16 Mi floats, 64 MiB).
pub const CHUNK_ELEMENTS: i64 = 1 << 24;

/// How the bank selects its coreset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBankConfig {
    /// Fraction of the collected features kept, in `(0, 1]`; 1 keeps all (no selection).
    /// The paper reports 0.01, 0.1 and 0.25 (PatchCore-1%/-10%/-25%).
    #[serde(default = "d_ratio")]
    pub coreset_ratio: f64,
    /// Dimension of the random projection the selection measures distances in; 0 = none.
    #[serde(default = "d_projection")]
    pub projection_dim: i64,
    /// How the greedy selection starts (module doc). The default, `random_item`, is left out
    /// of the resolved config so that earlier runs keep their config hash.
    #[serde(default, skip_serializing_if = "CoresetStart::is_random_item")]
    pub start: CoresetStart,
}

/// How the greedy coreset selection starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoresetStart {
    /// One random row, selected first (paper Alg. 1, anomalib).
    #[default]
    RandomItem,
    /// The official `ApproximateGreedyCoresetSampler`: each row starts at its mean distance
    /// to [`APPROXIMATE_START_POINTS`] random rows, which are not selected.
    Approximate,
}

impl CoresetStart {
    fn is_random_item(&self) -> bool {
        *self == CoresetStart::RandomItem
    }
}

/// Random rows whose mean distance starts `start = "approximate"` (the official
/// `number_of_starting_points`; all rows when there are fewer).
pub const APPROXIMATE_START_POINTS: usize = 10;

fn d_ratio() -> f64 {
    0.1
}
fn d_projection() -> i64 {
    128
}

impl Default for PatchBankConfig {
    fn default() -> Self {
        Self::paper_mvtec()
    }
}

impl PatchBankConfig {
    /// PatchCore-10% on MVTec AD (paper Tables 1-2; the official WRN-50 model): ratio 0.1,
    /// projection to 128 dimensions.
    pub fn paper_mvtec() -> Self {
        PatchBankConfig {
            coreset_ratio: d_ratio(),
            projection_dim: d_projection(),
            start: CoresetStart::RandomItem,
        }
    }

    /// Checks the values; `path` is the key path of the section for the error.
    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let r = self.coreset_ratio;
        if r.is_nan() || r <= 0.0 || r > 1.0 {
            return Err(ConfigError::new(
                format!("{path}.coreset_ratio"),
                format!("must be in (0, 1], got {r}"),
            ));
        }
        if self.projection_dim < 0 {
            return Err(ConfigError::new(
                format!("{path}.projection_dim"),
                "must be >= 0 (0 = no projection)",
            ));
        }
        Ok(())
    }
}

/// Items a coreset of `ratio` keeps out of `n`: `int(n * ratio)` as the official code and
/// anomalib compute it (the float64 product truncated, its rounding included: `100 * 0.29`
/// keeps 28), at least 1 (for `n > 0`; the official code would keep none) and at most `n`.
pub fn coreset_size(n: i64, ratio: f64) -> i64 {
    ((n as f64 * ratio) as i64).clamp(n.min(1), n)
}

/// SplitMix64 (Steele et al. 2014): memad's own seeded generator, so that a bank's selection
/// depends on its seed only.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (the modulo bias is below `n / 2^64`).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// A dense Gaussian Johnson-Lindenstrauss projection with entries `N(0, 1/dim_out)` (squared
/// distances preserved in expectation), drawn from `seed`.
///
/// # Shapes
/// Returns `[dim_in, dim_out]` float32 on `device`.
pub fn gaussian_projection(dim_in: i64, dim_out: i64, seed: u64, device: Device) -> Tensor {
    let mut rng = SplitMix64(seed);
    let scale = 1.0 / (dim_out as f64).sqrt();
    let values: Vec<f32> = (0..dim_in * dim_out)
        .map(|_| (rng.normal() * scale) as f32)
        .collect();
    Tensor::from_slice(&values)
        .reshape([dim_in, dim_out])
        .to_device(device)
}

/// Squared Euclidean distances of every row of `features` to the row `index`, in row chunks.
///
/// # Shapes
/// `features`: `[N, d]`, `index`: `[1]` int64 on the features' device -> `[N]`.
fn squared_distances_to(features: &Tensor, index: &Tensor) -> Tensor {
    let [n, d] = features.size()[..] else {
        unreachable!("checked by the caller")
    };
    let centre = features.index_select(0, index);
    let rows = (CHUNK_ELEMENTS / d.max(1)).max(1);
    let parts: Vec<Tensor> = (0..n)
        .step_by(rows as usize)
        .map(|s| {
            (features.narrow(0, s, rows.min(n - s)) - &centre)
                .square()
                .sum_dim_intlist([1i64].as_slice(), false, None::<Kind>)
        })
        .collect();
    Tensor::cat(&parts, 0)
}

/// Greedy k-center selection (paper Alg. 1) of `k` rows of `features`, starting from row
/// `start`: each step adds the row farthest (Euclidean) from those selected so far; ties go to
/// the lowest index; a row is never selected twice. `progress(i, k)` after each step (on
/// CUDA it counts steps queued, not finished: nothing here waits for the device).
///
/// # Shapes
/// `features`: `[N, d]` -> `[k]` int64 row indices in selection order (`start` first), on
/// the features' device.
pub fn greedy_k_center(
    features: &Tensor,
    k: i64,
    start: i64,
    progress: Progress<'_>,
) -> Result<Tensor> {
    check_selection("greedy_k_center", features, k, &[start])?;
    let device = features.device();
    let selected = Tensor::empty([k], (Kind::Int64, device));
    let first = Tensor::from_slice(&[start]).to_device(device);
    selected.narrow(0, 0, 1).copy_(&first);
    // Distance of each row to the coreset; -1 marks selected rows so that duplicates of a
    // selected row (distance 0) are preferred over selecting a row twice.
    let mut min_dist = squared_distances_to(features, &first);
    let _ = min_dist.index_fill_(0, &first, -1.0);
    greedy_steps(features, min_dist, &selected, 1, progress);
    Ok(selected)
}

/// Greedy k-center selection with the official `ApproximateGreedyCoresetSampler`'s start
/// (module doc): every row begins at its mean Euclidean distance to the rows `start_points`,
/// which are not selected; then each step adds the row farthest from the selection, that
/// mean capping every distance. Ties go to the lowest index; a row is never selected twice.
///
/// # Shapes
/// `features`: `[N, d]` -> `[k]` int64 row indices in selection order, on the features'
/// device.
pub fn approximate_greedy_k_center(
    features: &Tensor,
    k: i64,
    start_points: &[i64],
    progress: Progress<'_>,
) -> Result<Tensor> {
    check_selection("approximate_greedy_k_center", features, k, start_points)?;
    if start_points.is_empty() {
        return Err(CoreError::Invalid(
            "approximate_greedy_k_center: needs at least one start point".into(),
        ));
    }
    let device = features.device();
    let mean_distance = start_points
        .iter()
        .map(|&s| {
            squared_distances_to(features, &Tensor::from_slice(&[s]).to_device(device)).sqrt()
        })
        .reduce(|a, b| a + b)
        .expect("checked non-empty")
        / start_points.len() as f64;
    // Squared, as the steps compare squared distances (the same order as Euclidean ones).
    let min_dist = mean_distance.square();
    let selected = Tensor::empty([k], (Kind::Int64, device));
    greedy_steps(features, min_dist, &selected, 0, progress);
    Ok(selected)
}

/// Checks `features` is `[N, d]`, `1 <= k <= N` and every start row is in `0..N`.
fn check_selection(what: &str, features: &Tensor, k: i64, starts: &[i64]) -> Result<()> {
    let size = features.size();
    if size.len() != 2 {
        return Err(CoreError::Invalid(format!(
            "{what}: features must be [N, d], got {size:?}"
        )));
    }
    let n = size[0];
    if starts.iter().any(|s| !(0..n).contains(s)) || k < 1 || k > n {
        return Err(CoreError::Invalid(format!(
            "{what}: need start rows in 0..N and 1 <= k <= N, got start {starts:?}, k {k}, N {n}"
        )));
    }
    Ok(())
}

/// The greedy steps `from..k` of a selection: each writes into `selected[i]` the row of the
/// largest `min_dist` (squared distance to the selection, -1 for selected rows) and lowers
/// `min_dist` by that row's distances. The indices stay on the device: no step waits for the
/// GPU (the reference's loop reads each argmax back with `.item()`).
fn greedy_steps(
    features: &Tensor,
    mut min_dist: Tensor,
    selected: &Tensor,
    from: i64,
    progress: Progress<'_>,
) {
    let k = selected.size()[0];
    for i in from..k {
        let next = min_dist.argmax(0, true);
        selected.narrow(0, i, 1).copy_(&next);
        if i + 1 < k {
            min_dist = min_dist.minimum(&squared_distances_to(features, &next));
            let _ = min_dist.index_fill_(0, &next, -1.0);
        }
        progress(i as u64 + 1, k as u64);
    }
}

/// The rows of `features` a bank with `config` and `seed` keeps (module doc); the greedy
/// selection's steps go to `progress`.
///
/// # Shapes
/// `features`: `[N, D]` -> `[coreset_size(N, ratio)]` int64, in selection order; `0..N` when
/// the ratio keeps everything.
pub fn coreset_indices(
    features: &Tensor,
    config: &PatchBankConfig,
    seed: u64,
    progress: Progress<'_>,
) -> Result<Tensor> {
    let size = features.size();
    if size.len() != 2 || size[0] == 0 {
        return Err(CoreError::Invalid(format!(
            "coreset: features must be a non-empty [N, D], got {size:?}"
        )));
    }
    let (n, dim) = (size[0], size[1]);
    let k = coreset_size(n, config.coreset_ratio);
    if k >= n {
        return Ok(Tensor::arange(n, (Kind::Int64, features.device())));
    }
    let mut rng = SplitMix64(seed);
    let starts = match config.start {
        CoresetStart::RandomItem => vec![rng.below(n as u64) as i64],
        CoresetStart::Approximate => distinct_rows(&mut rng, APPROXIMATE_START_POINTS, n),
    };
    let reduced = if config.projection_dim > 0 && config.projection_dim < dim {
        let p = gaussian_projection(
            dim,
            config.projection_dim,
            rng.next_u64(),
            features.device(),
        );
        features.matmul(&p.to_kind(features.kind()))
    } else {
        features.shallow_clone()
    };
    match config.start {
        CoresetStart::RandomItem => greedy_k_center(&reduced, k, starts[0], progress),
        CoresetStart::Approximate => approximate_greedy_k_center(&reduced, k, &starts, progress),
    }
}

/// `min(count, n)` distinct rows of `0..n`, in the order drawn.
fn distinct_rows(rng: &mut SplitMix64, count: usize, n: i64) -> Vec<i64> {
    let count = count.min(n as usize);
    let mut rows = Vec::with_capacity(count);
    while rows.len() < count {
        let row = rng.below(n as u64) as i64;
        if !rows.contains(&row) {
            rows.push(row);
        }
    }
    rows
}

/// The `k` nearest bank items of each query, nearest first.
#[derive(Debug)]
pub struct Neighbours {
    /// `[N, k]` Euclidean distances, ascending along `k`.
    pub distance: Tensor,
    /// `[N, k]` int64 bank indices.
    pub index: Tensor,
}

/// A memory bank of patch features fitted once (module doc).
#[derive(Debug)]
pub struct PatchBank {
    config: PatchBankConfig,
    seed: u64,
    /// `[n_i, D]` features collected by `update` since the last `finalize`.
    collected: Vec<Tensor>,
    /// `D`, once known.
    dim: Option<i64>,
    /// `[M, D]`, once finalized or loaded.
    bank: Option<Tensor>,
}

impl PatchBank {
    /// An empty bank; `seed` fixes the coreset's start item and projection.
    pub fn new(config: PatchBankConfig, seed: u64) -> Self {
        PatchBank {
            config,
            seed,
            collected: Vec::new(),
            dim: None,
            bank: None,
        }
    }

    pub fn config(&self) -> &PatchBankConfig {
        &self.config
    }

    /// The bank items `[M, D]`, once finalized or loaded.
    pub fn items(&self) -> Option<&Tensor> {
        self.bank.as_ref()
    }

    /// Bank items `M` (0 before `finalize`).
    pub fn len(&self) -> i64 {
        self.bank.as_ref().map_or(0, |b| b.size()[0])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Feature rows collected by `update` and not yet finalized.
    pub fn collected(&self) -> i64 {
        self.collected.iter().map(|t| t.size()[0]).sum()
    }

    /// Checks a `[N, D]` float query against the bank's `D`.
    fn check_query(&self, query: &Tensor, what: &str) -> Result<()> {
        let size = query.size();
        if size.len() != 2 || !query.is_floating_point() {
            return Err(CoreError::Invalid(format!(
                "patch bank {what}: expected a float [N, D] tensor, got {size:?} {:?}",
                query.kind()
            )));
        }
        match self.dim {
            Some(d) if d != size[1] => Err(CoreError::Invalid(format!(
                "patch bank {what}: the bank holds {d}-dimensional features, got {}",
                size[1]
            ))),
            _ => Ok(()),
        }
    }

    /// The `min(k, M)` nearest bank items of each query, nearest first.
    ///
    /// # Shapes
    /// `query`: `[N, D]` -> distances and indices `[N, min(k, M)]`, on the query's device.
    ///
    /// # Errors
    /// An empty bank (before `finalize` or `load_state`), a query of another width, `k < 1`.
    pub fn k_nearest(&self, query: &Tensor, k: i64) -> Result<Neighbours> {
        // Always in fp32: under a bf16 run's autocast the matmul of the expanded distances
        // would run in bf16 and pick other neighbours (a third of the queries in a test).
        let device = self.bank.as_ref().map_or(query.device(), Tensor::device);
        memad_core::precision::full_precision(device, || self.k_nearest_fp32(query, k))
    }

    fn k_nearest_fp32(&self, query: &Tensor, k: i64) -> Result<Neighbours> {
        let bank = self.bank.as_ref().ok_or_else(|| {
            CoreError::Invalid(
                "patch bank read: the bank is empty (call finalize() or load_state() first)".into(),
            )
        })?;
        self.check_query(query, "read")?;
        if k < 1 {
            return Err(CoreError::Invalid(format!(
                "patch bank read: k must be at least 1, got {k}"
            )));
        }
        let [m, dim] = bank.size()[..] else {
            unreachable!("a bank is [M, D]")
        };
        let k = k.min(m);
        let out_device = query.device();
        let queries = query.to_device(bank.device()).to_kind(bank.kind());
        let n = queries.size()[0];
        if n == 0 {
            return Ok(Neighbours {
                distance: Tensor::zeros([0, k], (bank.kind(), out_device)),
                index: Tensor::zeros([0, k], (Kind::Int64, out_device)),
            });
        }
        let bank_sq = bank
            .square()
            .sum_dim_intlist([1i64].as_slice(), false, None::<Kind>);
        let bank_rows = m.min(8192);
        let query_rows = (CHUNK_ELEMENTS / bank_rows)
            .min(CHUNK_ELEMENTS / (k * dim).max(1))
            .max(1);
        let (mut distances, mut indices) = (Vec::new(), Vec::new());
        for qs in (0..n).step_by(query_rows as usize) {
            let q = queries.narrow(0, qs, query_rows.min(n - qs));
            let q_sq = q
                .square()
                .sum_dim_intlist([1i64].as_slice(), true, None::<Kind>);
            // Candidates by the expanded squared distance, merged over bank chunks.
            let mut best: Option<(Tensor, Tensor)> = None;
            for bs in (0..m).step_by(bank_rows as usize) {
                let len = bank_rows.min(m - bs);
                let d2 = &q_sq - q.matmul(&bank.narrow(0, bs, len).tr()) * 2.0
                    + bank_sq.narrow(0, bs, len).unsqueeze(0);
                let (v, i) = d2.topk(k.min(len), 1, false, true);
                let i = i + bs;
                best = Some(match best {
                    None => (v, i),
                    Some((bv, bi)) => {
                        let v = Tensor::cat(&[bv, v], 1);
                        let i = Tensor::cat(&[bi, i], 1);
                        let (v, pos) = v.topk(k, 1, false, true);
                        (v, i.gather(1, &pos, false))
                    }
                });
            }
            let (_, idx) = best.expect("a non-empty bank has one chunk at least");
            // Exact distances of the candidates, re-sorted.
            let rows = q.size()[0];
            let items = bank
                .index_select(0, &idx.flatten(0, -1))
                .reshape([rows, k, dim]);
            let exact = (q.unsqueeze(1) - items)
                .square()
                .sum_dim_intlist([2i64].as_slice(), false, None::<Kind>)
                .sqrt();
            let (exact, order) = exact.sort(1, false);
            distances.push(exact);
            indices.push(idx.gather(1, &order, false));
        }
        Ok(Neighbours {
            distance: Tensor::cat(&distances, 0).to_device(out_device),
            index: Tensor::cat(&indices, 0).to_device(out_device),
        })
    }

    /// [`Memory::read`] with errors instead of panics.
    ///
    /// # Shapes
    /// `query`: `[N, D]` -> `output [N, D]` (the nearest item), `distance [N]`.
    pub fn try_read(&self, query: &Tensor) -> Result<MemoryRead> {
        let nn = self.k_nearest(query, 1)?;
        let index = nn.index.squeeze_dim(1);
        let items = self.bank.as_ref().expect("k_nearest checked the bank");
        let output = items
            .index_select(0, &index.to_device(items.device()))
            .to_device(query.device());
        Ok(MemoryRead {
            output,
            attention: None,
            distance: Some(nn.distance.squeeze_dim(1)),
        })
    }
}

impl Memory for PatchBank {
    /// # Panics
    /// On an empty bank or a query of another width: the trait has no error channel; use
    /// [`PatchBank::try_read`] or [`PatchBank::k_nearest`] for a `Result`.
    fn read(&self, query: &Tensor, _train: bool) -> MemoryRead {
        self.try_read(query).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Appends `query [N, D]` (detached, on its device) to the collected features.
    fn update(&mut self, query: &Tensor) -> Result<()> {
        self.check_query(query, "update")?;
        self.dim = Some(query.size()[1]);
        self.collected.push(query.detach());
        Ok(())
    }

    /// Replaces the bank by the coreset of the features collected since the last `finalize`.
    /// Nothing collected: a no-op when a bank exists, else an error. `progress` counts the
    /// coreset's greedy steps.
    fn finalize(&mut self, progress: Progress<'_>) -> Result<()> {
        if self.collected.is_empty() {
            return match self.bank {
                Some(_) => Ok(()),
                None => Err(CoreError::Invalid(
                    "patch bank finalize: no features were collected (call update first)".into(),
                )),
            };
        }
        let features = Tensor::cat(&self.collected, 0);
        self.collected.clear();
        if coreset_size(features.size()[0], self.config.coreset_ratio) >= features.size()[0] {
            self.bank = Some(features);
            return Ok(());
        }
        let keep = coreset_indices(&features, &self.config, self.seed, progress)?;
        self.bank = Some(features.index_select(0, &keep));
        Ok(())
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        self.bank
            .iter()
            .map(|b| ("bank".to_string(), b.shallow_clone()))
            .collect()
    }

    /// Loads `bank [M, D]` (float, `M >= 1`); clears what was collected.
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let (_, bank) = state
            .iter()
            .find(|(name, _)| name == "bank")
            .ok_or_else(|| {
                CoreError::Invalid("patch bank load_state: no tensor named `bank`".into())
            })?;
        let size = bank.size();
        if size.len() != 2 || size[0] == 0 || !bank.is_floating_point() {
            return Err(CoreError::Invalid(format!(
                "patch bank load_state: `bank` must be a non-empty float [M, D], got {size:?} {:?}",
                bank.kind()
            )));
        }
        self.collected.clear();
        self.dim = Some(size[1]);
        self.bank = Some(bank.shallow_clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests;
