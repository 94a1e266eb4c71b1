use super::*;
use memad_core::no_progress;

/// `[n, d]` standard-normal rows from memad's generator (no global libtorch state, so the
/// tests may run in parallel).
fn data(n: usize, d: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = SplitMix64(seed);
    (0..n)
        .map(|_| (0..d).map(|_| rng.normal()).collect())
        .collect()
}

fn tensor(rows: &[Vec<f64>]) -> Tensor {
    let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
    Tensor::from_slice(&flat).reshape([rows.len() as i64, rows[0].len() as i64])
}

/// The rows of a float tensor, as f64 (the values the tensor holds, after rounding to f32).
fn rows_of(t: &Tensor) -> Vec<Vec<f64>> {
    let d = t.size()[1] as usize;
    let flat: Vec<f64> = Vec::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap();
    flat.chunks(d).map(<[f64]>::to_vec).collect()
}

fn dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Alg. 1 written out with loops in f64: the farthest row from the selection, lowest index on
/// ties, never a row twice.
fn brute_force_k_center(x: &[Vec<f64>], k: usize, start: usize) -> Vec<i64> {
    let mut selected = vec![start];
    while selected.len() < k {
        let mut best = (f64::NEG_INFINITY, 0);
        for (i, xi) in x.iter().enumerate() {
            if selected.contains(&i) {
                continue;
            }
            let d = selected
                .iter()
                .map(|&j| dist(xi, &x[j]))
                .fold(f64::INFINITY, f64::min);
            if d > best.0 {
                best = (d, i);
            }
        }
        selected.push(best.1);
    }
    selected.into_iter().map(|i| i as i64).collect()
}

fn indices(t: &Tensor) -> Vec<i64> {
    Vec::try_from(t.flatten(0, -1)).unwrap()
}

/// `max_i min_{c in coreset} ||x_i - c||`.
fn coverage_radius(x: &[Vec<f64>], coreset: &[i64]) -> f64 {
    x.iter()
        .map(|xi| {
            coreset
                .iter()
                .map(|&c| dist(xi, &x[c as usize]))
                .fold(f64::INFINITY, f64::min)
        })
        .fold(0.0, f64::max)
}

fn config(ratio: f64, projection_dim: i64) -> PatchBankConfig {
    PatchBankConfig {
        coreset_ratio: ratio,
        projection_dim,
        start: CoresetStart::RandomItem,
    }
}

/// The official `ApproximateGreedyCoresetSampler` written out with loops in f64: every row
/// starts at its mean distance to `starts` (not selected), then the farthest row from the
/// selection, that mean capping each distance; lowest index on ties, never a row twice.
fn brute_force_approximate(x: &[Vec<f64>], k: usize, starts: &[usize]) -> Vec<i64> {
    let mean: Vec<f64> = (x.iter())
        .map(|xi| starts.iter().map(|&s| dist(xi, &x[s])).sum::<f64>() / starts.len() as f64)
        .collect();
    let mut selected: Vec<usize> = Vec::new();
    while selected.len() < k {
        let mut best = (f64::NEG_INFINITY, 0);
        for (i, xi) in x.iter().enumerate() {
            if selected.contains(&i) {
                continue;
            }
            let d = (selected.iter())
                .map(|&j| dist(xi, &x[j]))
                .fold(mean[i], f64::min);
            if d > best.0 {
                best = (d, i);
            }
        }
        selected.push(best.1);
    }
    selected.into_iter().map(|i| i as i64).collect()
}

#[test]
fn greedy_k_center_equals_the_brute_force_algorithm() {
    let x = data(80, 6, 1);
    for (k, start) in [(1, 5), (10, 0), (25, 41), (80, 79)] {
        let got =
            indices(&greedy_k_center(&tensor(&x), k as i64, start as i64, &no_progress).unwrap());
        assert_eq!(
            got,
            brute_force_k_center(&x, k, start),
            "k {k} start {start}"
        );
    }
}

#[test]
fn approximate_greedy_k_center_equals_the_brute_force_algorithm() {
    let x = data(90, 5, 11);
    for (k, starts) in [
        (1, vec![3]),
        (12, vec![0, 17, 44]),
        (30, (0..10).collect()),
        (90, vec![89]),
    ] {
        let starts_i64: Vec<i64> = starts.iter().map(|&s| s as i64).collect();
        let got = indices(
            &approximate_greedy_k_center(&tensor(&x), k as i64, &starts_i64, &no_progress).unwrap(),
        );
        assert_eq!(
            got,
            brute_force_approximate(&x, k, &starts),
            "k {k} starts {starts:?}"
        );
    }
}

#[test]
fn the_approximate_start_selects_the_farthest_row_on_average_first() {
    // 1-D points 0, 1, 2, 10, 11 with start points {0, 1}: mean distances 0.5, 0.5, 1.5, 9.5,
    // 10.5, so row 4 is selected first, then row 2 (min(1.5, 9) beats 0.5, 0.5 and
    // min(9.5, 1)); the start rows are not selected for being starts. Alg. 1 from row 0 would
    // select 0, 4, 2.
    let x: Vec<Vec<f64>> = [0.0, 1.0, 2.0, 10.0, 11.0]
        .iter()
        .map(|&v| vec![v])
        .collect();
    let got = indices(&approximate_greedy_k_center(&tensor(&x), 2, &[0, 1], &no_progress).unwrap());
    assert_eq!(got, vec![4, 2]);
    assert_eq!(
        indices(&greedy_k_center(&tensor(&x), 3, 0, &no_progress).unwrap()),
        vec![0, 4, 2]
    );
}

#[test]
fn coreset_with_the_approximate_start_uses_ten_seeded_distinct_start_rows() {
    let (n, d, proj, seed) = (150, 12, 6, 21);
    let x = data(n, d, 8);
    let cfg = PatchBankConfig {
        start: CoresetStart::Approximate,
        ..config(0.1, proj)
    };
    let got = indices(&coreset_indices(&tensor(&x), &cfg, seed, &no_progress).unwrap());
    let mut rng = SplitMix64(seed);
    let starts = distinct_rows(&mut rng, APPROXIMATE_START_POINTS, n as i64);
    assert_eq!(starts.len(), 10);
    let mut sorted = starts.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 10, "{starts:?}");
    let p = gaussian_projection(d as i64, proj, rng.next_u64(), Device::Cpu);
    let projected = rows_of(&tensor(&x).matmul(&p));
    let starts: Vec<usize> = starts.iter().map(|&s| s as usize).collect();
    assert_eq!(got, brute_force_approximate(&projected, 15, &starts));
    // Fewer rows than start points: every row is a start point.
    assert_eq!(distinct_rows(&mut SplitMix64(1), 10, 4).len(), 4);
}

#[test]
fn the_default_start_is_left_out_of_the_resolved_config() {
    let default = toml::to_string(&PatchBankConfig::default()).unwrap();
    assert!(!default.contains("start"), "{default}");
    let approximate = PatchBankConfig {
        start: CoresetStart::Approximate,
        ..PatchBankConfig::default()
    };
    let text = toml::to_string(&approximate).unwrap();
    assert!(text.contains("start = \"approximate\""), "{text}");
    let back: PatchBankConfig = toml::from_str(&text).unwrap();
    assert_eq!(back, approximate);
    let typo = toml::from_str::<PatchBankConfig>("start = \"aproximate\"").unwrap_err();
    assert!(typo.to_string().contains("random_item"), "{typo}");
}

#[test]
fn greedy_k_center_reports_each_step_to_its_progress() {
    let calls = std::cell::RefCell::new(Vec::new());
    let record = |done: u64, total: u64| calls.borrow_mut().push((done, total));
    let selected = greedy_k_center(&tensor(&data(40, 3, 2)), 6, 0, &record).unwrap();
    assert_eq!(selected.size(), [6]);
    assert_eq!(
        calls.into_inner(),
        (2..=6).map(|i| (i, 6)).collect::<Vec<_>>()
    );
}

#[test]
fn coreset_without_projection_is_greedy_k_center_from_the_seeded_start() {
    let x = data(120, 5, 2);
    let seed = 7;
    let got = indices(&coreset_indices(&tensor(&x), &config(0.1, 0), seed, &no_progress).unwrap());
    let start = SplitMix64(seed).below(120) as usize;
    assert_eq!(got, brute_force_k_center(&x, 12, start));
}

#[test]
fn coreset_with_projection_is_greedy_k_center_in_the_projected_space() {
    let (n, d, proj, seed) = (100, 24, 8, 3);
    let x = data(n, d, 4);
    let got =
        indices(&coreset_indices(&tensor(&x), &config(0.25, proj), seed, &no_progress).unwrap());
    let mut rng = SplitMix64(seed);
    let start = rng.below(n as u64) as usize;
    let p = gaussian_projection(d as i64, proj, rng.next_u64(), Device::Cpu);
    let projected = rows_of(&tensor(&x).matmul(&p));
    assert_eq!(got, brute_force_k_center(&projected, 25, start));
    // The projection changes the selection (else this test would not test it).
    assert_ne!(got, brute_force_k_center(&x, 25, start));
}

#[test]
fn coverage_radius_does_not_grow_with_the_ratio() {
    let x = data(200, 16, 5);
    let mut previous: Option<(Vec<i64>, f64)> = None;
    for ratio in [0.01, 0.05, 0.1, 0.25, 0.5, 1.0] {
        let coreset =
            indices(&coreset_indices(&tensor(&x), &config(ratio, 4), 9, &no_progress).unwrap());
        assert_eq!(coreset.len() as i64, coreset_size(200, ratio));
        let radius = coverage_radius(&x, &coreset);
        if let Some((smaller, r)) = &previous {
            assert!(radius <= *r, "ratio {ratio}: radius {radius} > {r}");
            if ratio < 1.0 {
                // Same start and projection: a larger coreset extends the smaller one.
                assert_eq!(&coreset[..smaller.len()], &smaller[..], "ratio {ratio}");
            }
        }
        previous = Some((coreset, radius));
    }
    assert_eq!(previous.unwrap().1, 0.0, "ratio 1 covers every item");
}

#[test]
fn coreset_size_truncates_as_the_official_code() {
    // Python's int(n * ratio), checked there: 1536, 1, 0 (kept at 1 here), 2, 28, 7.
    assert_eq!(coreset_size(15360, 0.1), 1536);
    assert_eq!(coreset_size(10, 0.1), 1);
    assert_eq!(coreset_size(50, 0.01), 1);
    assert_eq!(coreset_size(10, 0.25), 2);
    assert_eq!(coreset_size(100, 0.29), 28);
    assert_eq!(coreset_size(100, 0.07), 7);
    assert_eq!(coreset_size(7, 1.0), 7);
    assert_eq!(coreset_size(0, 0.1), 0);
}

#[test]
fn gaussian_projection_is_seeded_and_scaled() {
    let a = gaussian_projection(256, 64, 11, Device::Cpu);
    let b = gaussian_projection(256, 64, 11, Device::Cpu);
    let c = gaussian_projection(256, 64, 12, Device::Cpu);
    assert_eq!(a.size(), [256, 64]);
    assert!(a.equal(&b));
    assert!(!a.equal(&c));
    // Entries N(0, 1/64): variance 1/64 within 5% over 16384 draws; mean near 0.
    let var = a.square().mean(Kind::Double).double_value(&[]);
    assert!(
        (var * 64.0 - 1.0).abs() < 0.05,
        "variance x 64 = {}",
        var * 64.0
    );
    assert!(a.mean(Kind::Double).double_value(&[]).abs() < 0.01);
}

fn fitted(rows: &[Vec<f64>], ratio: f64) -> PatchBank {
    let mut bank = PatchBank::new(config(ratio, 0), 0);
    bank.update(&tensor(rows)).unwrap();
    bank.finalize(&no_progress).unwrap();
    bank
}

#[test]
fn nearest_neighbours_equal_brute_force_across_bank_chunks() {
    // 9000 items: two bank chunks of the search, so the merge of chunk results is exercised.
    let items = data(9000, 4, 6);
    let queries = data(25, 4, 7);
    let bank = fitted(&items, 1.0);
    let nn = bank.k_nearest(&tensor(&queries), 3).unwrap();
    assert_eq!(nn.distance.size(), [25, 3]);
    let got_d = rows_of(&nn.distance);
    let got_i: Vec<i64> = indices(&nn.index);
    let items32 = rows_of(&tensor(&items));
    for (qi, q) in rows_of(&tensor(&queries)).iter().enumerate() {
        let mut all: Vec<(f64, usize)> = items32
            .iter()
            .enumerate()
            .map(|(i, x)| (dist(q, x), i))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        for j in 0..3 {
            assert_eq!(got_i[qi * 3 + j], all[j].1 as i64, "query {qi} rank {j}");
            assert!(
                (got_d[qi][j] - all[j].0).abs() < 1e-5,
                "query {qi} rank {j}"
            );
        }
    }
    // The Memory read: distance to and value of the nearest item.
    let read = bank.read(&tensor(&queries), false);
    assert!(read.attention.is_none());
    assert!(read.distance.unwrap().equal(&nn.distance.select(1, 0)));
    assert!(read
        .output
        .equal(&tensor(&items).index_select(0, &nn.index.select(1, 0))));
}

#[test]
fn nearest_neighbours_inside_a_bf16_autocast_region_are_the_fp32_ones() {
    use memad_core::precision::{autocast, Precision};
    // Wide features near each other, as patch features are: bf16 expanded distances would
    // pick other neighbours for many queries.
    let items = tensor(&data(500, 256, 8)) * 0.05 + 3.0;
    let queries = tensor(&data(64, 256, 9)) * 0.05 + 3.0;
    let mut bank = PatchBank::new(config(1.0, 0), 0);
    bank.load_state(&[("bank".into(), items)]).unwrap();
    let fp32 = bank.k_nearest(&queries, 1).unwrap();
    let bf16 = autocast(Device::Cpu, Precision::Bf16, || bank.k_nearest(&queries, 1)).unwrap();
    assert!(bf16.index.equal(&fp32.index));
    assert!(bf16.distance.equal(&fp32.distance));
}

#[test]
fn k_is_capped_by_the_bank_size_and_an_item_is_its_own_nearest() {
    let items = data(5, 3, 8);
    let bank = fitted(&items, 1.0);
    let nn = bank.k_nearest(&tensor(&items), 9).unwrap();
    assert_eq!(nn.index.size(), [5, 5]);
    assert_eq!(indices(&nn.index.select(1, 0)), vec![0, 1, 2, 3, 4]);
    assert_eq!(nn.distance.select(1, 0).abs().max().double_value(&[]), 0.0);
    let empty = Tensor::zeros([0, 3], (Kind::Float, Device::Cpu));
    assert_eq!(bank.k_nearest(&empty, 2).unwrap().index.size(), [0, 2]);
}

#[test]
fn ratio_one_keeps_every_feature_in_order() {
    let (a, b) = (data(7, 3, 9), data(4, 3, 10));
    let mut bank = PatchBank::new(config(1.0, 128), 0);
    bank.update(&tensor(&a)).unwrap();
    bank.update(&tensor(&b)).unwrap();
    assert_eq!(bank.collected(), 11);
    bank.finalize(&no_progress).unwrap();
    assert_eq!(bank.collected(), 0);
    let all = Tensor::cat(&[tensor(&a), tensor(&b)], 0);
    assert!(bank.items().unwrap().equal(&all));
}

#[test]
fn finalize_keeps_the_coreset_rows_unprojected() {
    let x = data(300, 32, 11);
    let cfg = config(0.1, 8);
    let mut bank = PatchBank::new(cfg.clone(), 42);
    bank.update(&tensor(&x).narrow(0, 0, 100)).unwrap();
    bank.update(&tensor(&x).narrow(0, 100, 200)).unwrap();
    bank.finalize(&no_progress).unwrap();
    assert_eq!(bank.len(), 30);
    let keep = coreset_indices(&tensor(&x), &cfg, 42, &no_progress).unwrap();
    assert!(bank
        .items()
        .unwrap()
        .equal(&tensor(&x).index_select(0, &keep)));
}

#[test]
fn state_round_trips() {
    let bank = fitted(&data(40, 5, 12), 0.5);
    let state = bank.state();
    assert_eq!(state.len(), 1);
    assert_eq!(state[0].0, "bank");
    let mut loaded = PatchBank::new(PatchBankConfig::default(), 1);
    loaded.load_state(&state).unwrap();
    let q = tensor(&data(6, 5, 13));
    let (a, b) = (
        bank.k_nearest(&q, 2).unwrap(),
        loaded.k_nearest(&q, 2).unwrap(),
    );
    assert!(a.index.equal(&b.index) && a.distance.equal(&b.distance));
    // Nothing collected after a load: finalize keeps the loaded bank.
    loaded.finalize(&no_progress).unwrap();
    assert_eq!(loaded.len(), 20);
}

#[test]
fn misuse_is_an_error_not_a_panic() {
    let mut bank = PatchBank::new(PatchBankConfig::default(), 0);
    let q = tensor(&data(3, 4, 14));
    let msg = |r: Result<Neighbours>| r.unwrap_err().to_string();
    assert!(msg(bank.k_nearest(&q, 1)).contains("the bank is empty"));
    let e = bank.try_read(&q).unwrap_err().to_string();
    assert!(e.contains("patch bank read: the bank is empty"), "{e}");
    assert!(bank
        .finalize(&no_progress)
        .unwrap_err()
        .to_string()
        .contains("no features were collected"));
    bank.update(&q).unwrap();
    let wrong = tensor(&data(3, 5, 15));
    assert!(bank
        .update(&wrong)
        .unwrap_err()
        .to_string()
        .contains("holds 4-dimensional features, got 5"));
    let ints = Tensor::zeros([2, 4], (Kind::Int64, Device::Cpu));
    let e = bank.update(&ints).unwrap_err().to_string();
    assert!(
        e.contains("patch bank update: expected a float [N, D] tensor, got [2, 4] Int64"),
        "{e}"
    );
    let e = (bank.update(&Tensor::zeros([4], (Kind::Float, Device::Cpu))))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("expected a float [N, D] tensor, got [4] Float"),
        "{e}"
    );
    bank.finalize(&no_progress).unwrap();
    assert!(msg(bank.k_nearest(&wrong, 1)).contains("holds 4-dimensional"));
    assert!(msg(bank.k_nearest(&q, 0)).contains("k must be at least 1"));
    let e = bank.load_state(&[]).unwrap_err().to_string();
    assert!(e.contains("no tensor named `bank`"), "{e}");
    let e = bank
        .load_state(&[(
            "bank".into(),
            Tensor::zeros([0, 4], (Kind::Float, Device::Cpu)),
        )])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`bank` must be a non-empty float [M, D], got [0, 4] Float"),
        "{e}"
    );
}

#[test]
fn config_validation_names_the_key() {
    assert!(PatchBankConfig::default().validate("method.memory").is_ok());
    let err = config(0.0, 128).validate("method.memory").unwrap_err();
    assert_eq!(err.path, "method.memory.coreset_ratio");
    assert!(
        err.message.contains("must be in (0, 1], got 0"),
        "{}",
        err.message
    );
    let err = config(1.5, 128).validate("m").unwrap_err();
    assert_eq!(err.path, "m.coreset_ratio");
    assert!(err.message.contains("got 1.5"), "{}", err.message);
    let err = config(f64::NAN, 128).validate("m").unwrap_err();
    assert_eq!(err.path, "m.coreset_ratio");
    assert!(err.message.contains("got NaN"), "{}", err.message);
    let err = config(0.1, -1).validate("m").unwrap_err();
    assert_eq!(err.path, "m.projection_dim");
}
