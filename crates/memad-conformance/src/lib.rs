//! The conformance suite every memory crate runs: one call, [`check_memory`], in one test.
//!
//! It checks the [`Memory`] contract of `memad-core` (`crates/memad-core/src/traits.rs`) on
//! the CPU, with `QUERIES` deterministic queries `[7, dim]`, and panics with a message
//! naming the broken rule:
//!
//! 1. `read` is pure: two reads give equal outputs, and neither a read (`train` false or
//!    true) nor [`Memory::losses`] changes the VarStore variables or `state()`.
//! 2. Shapes: `output` is `[N, dim]` and finite; `attention`, when present, is `[N, slots]`,
//!    non-negative, each row summing to 1 (or to 0: a row shrunk to nothing, as MemAE's
//!    hard shrinkage can do); `distance`, when present, is `[N]`, finite and >= 0.
//! 3. `losses` are named (unique, non-empty names), finite scalars; a term that requires
//!    grad gives a finite gradient to the query (when it depends on it).
//! 4. Gradients through `read`, as [`Expect::query_gradient`] claims: the gradient of
//!    `sum(probe * output)` reaches the query, finite and not all zero (or, when the
//!    memory says its output is detached from the query, none reaches it); and it reaches
//!    every trainable variable of the VarStore (a memory learned by gradient), finite and
//!    not all zero.
//! 5. `update`, as [`Expect::updated_by_rule`] claims: a memory updated by rule changes
//!    `state()` and the next read; any other changes neither the variables, `state()` nor
//!    the read (a fitted memory only collects in `update`). Then `update` and `finalize`
//!    keep the shapes of the variables, of `state()` and of reads.
//! 6. Checkpoints round-trip: a fresh memory (`make` on a new VarStore) given the
//!    variables (`VarStore::copy`) and `load_state(state())` reads exactly as the original;
//!    `load_state` rejects a state whose tensor has the wrong shape.
//!
//! The calling test says what the memory claims in an [`Expect`] (for a registered memory,
//! `updated_by_rule` comes from its registry entry: [`registered_updated_by_rule`]), and
//! the suite returns a [`Report`] of what it found so the test also asserts what it
//! expects (the loss names, whether there is state, ...). [`read_golden`] and
//! [`max_abs_diff`] serve the crates' parity tests against `tools/golden_*.py` fixtures.
//!
//! ```ignore
//! #[test]
//! fn conformance() {
//!     let expect = memad_conformance::Expect {
//!         updated_by_rule: memad_conformance::registered_updated_by_rule(my_memory::register, "my"),
//!         query_gradient: true,
//!     };
//!     let report = memad_conformance::check_memory(
//!         |path| Box::new(MyMemory::new(path, &MyConfig::small()).unwrap()),
//!         8,
//!         expect,
//!     );
//!     assert_eq!(report.loss_terms, ["my_term"]);
//! }
//! ```
use memad_core::{Memory, MemoryRead, Registry};
use std::collections::HashMap;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// Queries per check (`N`).
pub const QUERIES: i64 = 7;
/// Tolerance of the attention row sums.
const ROW_SUM_TOLERANCE: f64 = 1e-5;

/// What the suite saw, for the calling test to assert its own expectations on.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The attention's `slots`, when `read` returns attention.
    pub attention_slots: Option<i64>,
    /// Whether `read` returns a distance.
    pub has_distance: bool,
    /// Names of the loss terms, in order.
    pub loss_terms: Vec<String>,
    /// Names and shapes of `state()`.
    pub state: Vec<(String, Vec<i64>)>,
    /// Whether the memory has trainable variables (then check 4 ran).
    pub learned_by_gradient: bool,
}

/// What a memory claims, which the suite checks (no defaults: each crate's conformance test
/// states both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// Whether `update` changes the memory: the `updated_by_rule` of its registry entry
    /// ([`registered_updated_by_rule`]; for an unregistered memory, what it would be).
    /// `true`: `update` must change `state()` (where rule-updated items live, for
    /// checkpoints) and the next read. `false` (learned by gradient, with the default no-op
    /// `update`; or fitted, collecting in `update` and changing in `finalize`): `update`
    /// must change neither the variables, `state()` nor the read.
    pub updated_by_rule: bool,
    /// Whether the gradient of `read`'s output reaches the query: `true` for every read
    /// whose output depends on the query differentiably (attention over items, a
    /// straight-through estimator); `false` only where the output is detached from the
    /// query by design (MNAD's official read, a bank's nearest item), which the suite then
    /// checks too.
    pub query_gradient: bool,
}

/// The `updated_by_rule` of the memory `kind` that `register` (a memory crate's
/// `register` function) adds to a registry: what methods are told, for
/// [`Expect::updated_by_rule`]. Panics when `register` adds no such kind.
pub fn registered_updated_by_rule(register: fn(&mut Registry), kind: &str) -> bool {
    let mut registry = Registry::default();
    register(&mut registry);
    registry
        .memory(kind, "kind")
        .unwrap_or_else(|e| panic!("memory conformance: {e}"))
        .updated_by_rule
}

/// Runs the whole suite on memories built by `make` (called twice, each time with the root
/// of a new CPU VarStore) for queries of width `dim`, checking what `expect` claims.
/// Panics on the first violation.
pub fn check_memory(
    make: impl Fn(&nn::Path) -> Box<dyn Memory>,
    dim: i64,
    expect: Expect,
) -> Report {
    let vs = nn::VarStore::new(Device::Cpu);
    let mut memory = make(&vs.root());
    let query = queries(dim);

    // 1. Purity.
    let before = snapshot(&vs, memory.as_ref());
    let first = memory.read(&query, false);
    let second = memory.read(&query, false);
    assert_reads_equal(
        &first,
        &second,
        "two reads of the same query (read must be pure)",
    );
    let _ = memory.read(&query, true);
    let _ = memory.losses(&query, &first);
    assert_snapshots_equal(
        &before,
        &snapshot(&vs, memory.as_ref()),
        "after read/losses",
    );

    // 2. Shapes and values of a read.
    let (attention_slots, has_distance) = check_read(&first, dim, "read");

    // 3. Losses.
    let loss_terms = check_losses(memory.as_ref(), &query);

    // 4. Gradients through read: to the query as claimed, to every trainable variable.
    let learned_by_gradient = !vs.trainable_variables().is_empty();
    check_read_gradients(memory.as_ref(), &vs, &query, expect.query_gradient);

    // 5. Update as claimed; update and finalize keep shapes.
    let shapes_before = shapes(&before);
    memory
        .update(&query)
        .unwrap_or_else(|e| panic!("memory conformance: update failed: {e}"));
    let after_update = snapshot(&vs, memory.as_ref());
    let read_after_update = memory.read(&query, false);
    if expect.updated_by_rule {
        let state = |s: &[(String, Tensor)]| -> Vec<(String, Tensor)> {
            s.iter()
                .filter(|(n, _)| n.starts_with("state."))
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect()
        };
        assert!(
            !snapshots_equal(&state(&before), &state(&after_update)),
            "memory conformance: update left state() unchanged, but the memory is updated by \
             rule (Expect::updated_by_rule; rule-updated items belong in state())"
        );
        assert!(
            reads_differ(&first, &read_after_update).is_some(),
            "memory conformance: update left the next read unchanged, but the memory is \
             updated by rule (Expect::updated_by_rule)"
        );
    } else {
        assert!(
            snapshots_equal(&before, &after_update),
            "memory conformance: update changed the variables or state(), but the memory is \
             not updated by rule (Expect::updated_by_rule is false)"
        );
        if let Some(field) = reads_differ(&first, &read_after_update) {
            panic!(
                "memory conformance: update changed the next read ({field}), but the memory \
                 is not updated by rule (Expect::updated_by_rule is false)"
            );
        }
    }
    memory
        .finalize(&memad_core::no_progress)
        .unwrap_or_else(|e| panic!("memory conformance: finalize failed: {e}"));
    let after = snapshot(&vs, memory.as_ref());
    assert_eq!(
        shapes_before,
        shapes(&after),
        "memory conformance: update/finalize changed the names or shapes of variables/state"
    );
    let updated = memory.read(&query, false);
    assert_eq!(
        check_read(&updated, dim, "read after update"),
        (attention_slots, has_distance),
        "memory conformance: update changed what read returns"
    );

    // 6. Checkpoint round trip (after the update, so rule-updated state differs from init).
    let state = memory.state();
    let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        names.len(),
        "memory conformance: state names repeat: {names:?}"
    );
    let mut fresh_vs = nn::VarStore::new(Device::Cpu);
    let mut fresh = make(&fresh_vs.root());
    fresh_vs
        .copy(&vs)
        .unwrap_or_else(|e| panic!("memory conformance: a fresh memory has other variables: {e}"));
    fresh
        .load_state(&state)
        .unwrap_or_else(|e| panic!("memory conformance: load_state(state()) failed: {e}"));
    assert_reads_equal(
        &updated,
        &fresh.read(&query, false),
        "a fresh memory given the variables and load_state(state())",
    );
    for i in 0..state.len() {
        let mut bad: Vec<(String, Tensor)> = state
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        bad[i].1 = Tensor::zeros([1, 1, 1], (Kind::Float, Device::Cpu));
        assert!(
            fresh.load_state(&bad).is_err(),
            "memory conformance: load_state accepted `{}` with shape [1, 1, 1]",
            state[i].0
        );
    }

    Report {
        attention_slots,
        has_distance,
        loss_terms,
        state: state.iter().map(|(n, t)| (n.clone(), t.size())).collect(),
        learned_by_gradient,
    }
}

/// Deterministic queries `[QUERIES, dim]` in `[-1.5, 1.5]`, different rows, no RNG (the
/// global generator is shared by the tests of a process).
pub fn queries(dim: i64) -> Tensor {
    let n = QUERIES * dim;
    ((Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.77 + 0.3).sin() * 1.5)
        .reshape([QUERIES, dim])
}

/// Checks one read; returns `(attention slots, has distance)`.
fn check_read(read: &MemoryRead, dim: i64, what: &str) -> (Option<i64>, bool) {
    assert_eq!(
        read.output.size(),
        [QUERIES, dim],
        "memory conformance: {what}: output must be [N, D]"
    );
    assert_finite(&read.output, &format!("{what}: output"));
    let slots = read.attention.as_ref().map(|a| {
        let size = a.size();
        assert!(
            size.len() == 2 && size[0] == QUERIES && size[1] > 0,
            "memory conformance: {what}: attention must be [N, slots], got {size:?}"
        );
        assert_finite(a, &format!("{what}: attention"));
        let min = a.min().double_value(&[]);
        assert!(
            min >= 0.0,
            "memory conformance: {what}: attention has {min} < 0"
        );
        let sums = a.detach().sum_dim_intlist(1, false, Kind::Double);
        for (row, sum) in Vec::<f64>::try_from(&sums)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            assert!(
                (sum - 1.0).abs() <= ROW_SUM_TOLERANCE || sum.abs() <= ROW_SUM_TOLERANCE,
                "memory conformance: {what}: attention row {row} sums to {sum}, not 1 (or 0)"
            );
        }
        size[1]
    });
    if let Some(distance) = &read.distance {
        assert_eq!(
            distance.size(),
            [QUERIES],
            "memory conformance: {what}: distance must be [N]"
        );
        assert_finite(distance, &format!("{what}: distance"));
        let min = distance.min().double_value(&[]);
        assert!(
            min >= 0.0,
            "memory conformance: {what}: distance has {min} < 0"
        );
    }
    (slots, read.distance.is_some())
}

fn check_losses(memory: &dyn Memory, query: &Tensor) -> Vec<String> {
    let q = query.copy().set_requires_grad(true);
    let read = memory.read(&q, true);
    let terms = memory.losses(&q, &read);
    let mut names = Vec::new();
    for (name, value) in &terms {
        assert!(
            !name.is_empty(),
            "memory conformance: a loss term has no name"
        );
        assert!(
            !names.contains(name),
            "memory conformance: loss term `{name}` appears twice"
        );
        assert!(
            value.size().is_empty(),
            "memory conformance: loss `{name}` must be a scalar, got {:?}",
            value.size()
        );
        assert_finite(value, &format!("loss `{name}`"));
        if value.requires_grad() {
            let grads = Tensor::f_run_backward(&[value], &[&q], true, false)
                .unwrap_or_else(|e| panic!("memory conformance: backward of `{name}`: {e}"));
            if grads[0].defined() {
                assert_finite(&grads[0], &format!("gradient of `{name}` w.r.t. the query"));
            }
        }
        names.push(name.clone());
    }
    names
}

fn check_read_gradients(
    memory: &dyn Memory,
    vs: &nn::VarStore,
    query: &Tensor,
    query_gradient: bool,
) {
    let q = query.copy().set_requires_grad(true);
    let read = memory.read(&q, true);
    let mut variables: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    if !read.output.requires_grad() {
        assert!(
            !query_gradient,
            "memory conformance: no gradient reaches the query through read (its output is \
             detached), but Expect::query_gradient is true"
        );
        if let Some((name, _)) = variables.first() {
            panic!("memory conformance: no gradient reaches variable `{name}` through read");
        }
        return;
    }
    // Fixed, uneven weights so that no gradient cancels by symmetry.
    let probe = (Tensor::arange(read.output.numel() as i64, (Kind::Float, Device::Cpu)) * 1.3)
        .cos()
        .reshape(read.output.size());
    let loss = (&read.output * probe).sum(Kind::Float);
    let mut inputs = vec![q.shallow_clone()];
    inputs.extend(variables.iter().map(|(_, t)| t.shallow_clone()));
    let grads = Tensor::f_run_backward(&[loss], &inputs, false, false)
        .unwrap_or_else(|e| panic!("memory conformance: backward through read: {e}"));
    let names = std::iter::once("the query".to_string())
        .chain(variables.iter().map(|(n, _)| format!("variable `{n}`")));
    for (i, (name, grad)) in names.zip(&grads).enumerate() {
        if i == 0 && !query_gradient {
            let zero = !grad.defined() || grad.abs().sum(Kind::Double).double_value(&[]) == 0.0;
            assert!(
                zero,
                "memory conformance: a gradient reaches the query through read, but \
                 Expect::query_gradient is false"
            );
            continue;
        }
        assert!(
            grad.defined(),
            "memory conformance: no gradient reaches {name} through read"
        );
        assert_finite(grad, &format!("gradient of {name}"));
        let size = grad.abs().sum(Kind::Double).double_value(&[]);
        assert!(
            size > 0.0,
            "memory conformance: the gradient of {name} through read is 0"
        );
    }
}

/// Copies of the trainable and frozen variables (sorted by name) and of `state()`.
fn snapshot(vs: &nn::VarStore, memory: &dyn Memory) -> Vec<(String, Tensor)> {
    let mut all: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| (format!("var.{n}"), t.detach().copy()))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all.extend(
        memory
            .state()
            .into_iter()
            .map(|(n, t)| (format!("state.{n}"), t.detach().copy())),
    );
    all
}

fn shapes(snapshot: &[(String, Tensor)]) -> Vec<(String, Vec<i64>)> {
    snapshot
        .iter()
        .map(|(n, t)| (n.clone(), t.size()))
        .collect()
}

fn snapshots_equal(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> bool {
    shapes(a) == shapes(b) && a.iter().zip(b).all(|((_, x), (_, y))| x.equal(y))
}

fn assert_snapshots_equal(a: &[(String, Tensor)], b: &[(String, Tensor)], when: &str) {
    assert_eq!(
        shapes(a),
        shapes(b),
        "memory conformance: {when}: the variables/state changed names or shapes"
    );
    for ((name, x), (_, y)) in a.iter().zip(b) {
        assert!(
            x.equal(y),
            "memory conformance: {when}: `{name}` changed (read must be pure)"
        );
    }
}

/// The first field (`output`, `attention`, `distance`) in which two reads differ.
fn reads_differ(a: &MemoryRead, b: &MemoryRead) -> Option<&'static str> {
    let same = |x: &Tensor, y: &Tensor| x.size() == y.size() && x.detach().equal(&y.detach());
    if !same(&a.output, &b.output) {
        return Some("output");
    }
    for (field, x, y) in [
        ("attention", &a.attention, &b.attention),
        ("distance", &a.distance, &b.distance),
    ] {
        match (x, y) {
            (None, None) => {}
            (Some(x), Some(y)) if same(x, y) => {}
            _ => return Some(field),
        }
    }
    None
}

fn assert_reads_equal(a: &MemoryRead, b: &MemoryRead, what: &str) {
    if let Some(field) = reads_differ(a, b) {
        panic!("memory conformance: {what}: {field} differs");
    }
}

fn assert_finite(t: &Tensor, what: &str) {
    let finite = t.detach().isfinite().all().int64_value(&[]) == 1;
    assert!(finite, "memory conformance: {what} is not finite");
}

/// The arrays of a golden `.npz` fixture (written by a `tools/golden_*.py` script) by name;
/// panics naming the file when it cannot be read.
pub fn read_golden(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_npz(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// `max |a - b|`, computed in f64; panics when the shapes differ.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

#[cfg(test)]
mod tests {
    //! A toy memory that meets the contract, and copies of it that each break one rule.
    use super::*;
    use memad_core::{CoreError, Result};
    use std::cell::RefCell;

    #[derive(Clone, Copy, PartialEq)]
    enum Flaw {
        None,
        ImpureRead,
        UnnormalisedAttention,
        ForgetsState,
        NoGradient,
        /// `update` does nothing (the memory still claims to be updated by rule).
        NoOpUpdate,
        /// Items outside the VarStore (no trainable variable, as a rule-updated memory) and
        /// a read of the detached query: no gradient reaches the query.
        DetachedRead,
    }

    /// Soft attention over learned items, plus a rule-updated `bias` (the mean query).
    struct Toy {
        items: Tensor,
        bias: RefCell<Tensor>,
        flaw: Flaw,
    }

    impl Toy {
        fn new(path: &nn::Path, dim: i64, flaw: Flaw) -> Toy {
            let items = match flaw {
                Flaw::DetachedRead => (Tensor::arange(3 * dim, (Kind::Float, Device::Cpu)) * 0.53)
                    .cos()
                    .reshape([3, dim]),
                _ => path.var("items", &[3, dim], nn::Init::Uniform { lo: -1.0, up: 1.0 }),
            };
            Toy {
                items,
                bias: RefCell::new(Tensor::zeros([dim], (Kind::Float, Device::Cpu))),
                flaw,
            }
        }
    }

    impl Memory for Toy {
        fn read(&self, query: &Tensor, _train: bool) -> MemoryRead {
            let query = &match self.flaw {
                Flaw::DetachedRead => query.detach(),
                _ => query.shallow_clone(),
            };
            let items = match self.flaw {
                Flaw::NoGradient => self.items.detach(),
                _ => self.items.shallow_clone(),
            };
            let logits = query.matmul(&items.tr());
            let attention = match self.flaw {
                Flaw::UnnormalisedAttention => logits.exp(),
                _ => logits.softmax(1, Kind::Float),
            };
            let output = attention.matmul(&items) + &*self.bias.borrow();
            if self.flaw == Flaw::ImpureRead {
                let next = &*self.bias.borrow() + 1.0;
                *self.bias.borrow_mut() = next;
            }
            let distance = (query.unsqueeze(1) - self.items.unsqueeze(0))
                .square()
                .sum_dim_intlist(2, false, Kind::Float)
                .amin(1, false);
            MemoryRead {
                output,
                attention: Some(attention),
                distance: Some(distance),
            }
        }

        fn losses(&self, _query: &Tensor, read: &MemoryRead) -> Vec<(String, Tensor)> {
            let w = read.attention.as_ref().expect("toy has attention");
            let entropy = -(w * (w + 1e-12).log())
                .sum_dim_intlist(1, false, Kind::Float)
                .mean(Kind::Float);
            vec![("entropy".to_string(), entropy)]
        }

        fn update(&mut self, query: &Tensor) -> Result<()> {
            if self.flaw == Flaw::NoOpUpdate {
                return Ok(());
            }
            *self.bias.borrow_mut() = query.detach().mean_dim(0, false, Kind::Float);
            Ok(())
        }

        fn state(&self) -> Vec<(String, Tensor)> {
            vec![("bias".to_string(), self.bias.borrow().copy())]
        }

        fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
            let (_, bias) = state
                .iter()
                .find(|(n, _)| n == "bias")
                .ok_or_else(|| CoreError::Invalid("no `bias` in the state".into()))?;
            if bias.size() != self.bias.borrow().size() {
                return Err(CoreError::Invalid("`bias` has the wrong shape".into()));
            }
            if self.flaw != Flaw::ForgetsState {
                *self.bias.borrow_mut() = bias.copy();
            }
            Ok(())
        }
    }

    /// What the toy claims: its `bias` is updated by rule, its read depends on the query.
    const TOY: Expect = Expect {
        updated_by_rule: true,
        query_gradient: true,
    };

    fn check_with(flaw: Flaw, expect: Expect) -> Report {
        check_memory(|path| Box::new(Toy::new(path, 4, flaw)), 4, expect)
    }

    fn check(flaw: Flaw) -> Report {
        check_with(flaw, TOY)
    }

    #[test]
    fn a_conforming_memory_passes_and_is_reported() {
        let report = check(Flaw::None);
        assert_eq!(
            report,
            Report {
                attention_slots: Some(3),
                has_distance: true,
                loss_terms: vec!["entropy".to_string()],
                state: vec![("bias".to_string(), vec![4])],
                learned_by_gradient: true,
            }
        );
    }

    #[test]
    fn queries_are_deterministic_and_distinct() {
        let q = queries(3);
        assert_eq!(q.size(), [QUERIES, 3]);
        assert!(q.equal(&queries(3)));
        assert!(
            (q.get(0) - q.get(1))
                .abs()
                .sum(Kind::Float)
                .double_value(&[])
                > 0.1
        );
    }

    #[test]
    #[should_panic(expected = "read must be pure")]
    fn an_impure_read_fails() {
        check(Flaw::ImpureRead);
    }

    #[test]
    #[should_panic(expected = "not 1 (or 0)")]
    fn unnormalised_attention_fails() {
        check(Flaw::UnnormalisedAttention);
    }

    #[test]
    #[should_panic(expected = "load_state(state())")]
    fn a_state_that_does_not_round_trip_fails() {
        check(Flaw::ForgetsState);
    }

    #[test]
    #[should_panic(expected = "no gradient reaches variable `items`")]
    fn a_detached_learned_memory_fails() {
        check(Flaw::NoGradient);
    }

    #[test]
    #[should_panic(expected = "update left state() unchanged")]
    fn a_rule_updated_memory_whose_update_does_nothing_fails() {
        check(Flaw::NoOpUpdate);
    }

    #[test]
    fn a_memory_not_updated_by_rule_may_keep_the_default_update() {
        let expect = Expect {
            updated_by_rule: false,
            ..TOY
        };
        assert!(!check_with(Flaw::NoOpUpdate, expect).state.is_empty());
    }

    #[test]
    #[should_panic(expected = "update changed the variables or state()")]
    fn an_update_the_memory_does_not_claim_fails() {
        check_with(
            Flaw::None,
            Expect {
                updated_by_rule: false,
                ..TOY
            },
        );
    }

    #[test]
    #[should_panic(expected = "no gradient reaches the query")]
    fn a_detached_read_without_trainable_variables_fails() {
        check(Flaw::DetachedRead);
    }

    #[test]
    fn a_read_detached_by_design_passes_when_it_says_so() {
        let expect = Expect {
            query_gradient: false,
            ..TOY
        };
        assert!(!check_with(Flaw::DetachedRead, expect).learned_by_gradient);
    }

    #[test]
    #[should_panic(expected = "a gradient reaches the query through read, but")]
    fn a_gradient_the_memory_does_not_claim_fails() {
        check_with(
            Flaw::None,
            Expect {
                query_gradient: false,
                ..TOY
            },
        );
    }

    #[test]
    fn the_registry_entry_says_whether_a_memory_is_updated_by_rule() {
        fn register(registry: &mut Registry) {
            registry.add_memory(memad_core::MemoryEntry {
                kind: "toy",
                summary: "a toy",
                resolve: |section, _| Ok(section.clone()),
                updated_by_rule: true,
                build: |_, path| Ok(Box::new(Toy::new(path, 4, Flaw::None))),
            });
        }
        assert!(registered_updated_by_rule(register, "toy"));
    }
}
