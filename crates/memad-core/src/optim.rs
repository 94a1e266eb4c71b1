//! Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019) over a VarStore's trainable
//! variables, as PyTorch's `torch.optim.Adam` / `AdamW` compute them:
//!
//! ```text
//! g = grad (+ wd p for Adam)          p = p (1 - lr wd)   for AdamW
//! m = b1 m + (1 - b1) g               v = b2 v + (1 - b2) g^2
//! p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//! ```
//!
//! Why not tch's `nn::Adam` (libtorch's C++ `torch::optim::Adam`): its step allocates two
//! temporaries per parameter and makes one more pass over the first moment than PyTorch's
//! Python loop; on CPU it took 1.2-2x the time of `torch.optim.Adam` for MNAD's 15.6 M
//! parameters (`benches/reference/compare_steps.sh`, `docs/benchmarks.md`). This one does
//! seven in-place passes per parameter (two `lerp_` for the moments, the denominator built in
//! a scratch buffer reused by every parameter) and allocates nothing after the first step
//! (which creates the moments, lazily as PyTorch: a model only scored holds none). Gradients are
//! reset to undefined (`set_to_none`, PyTorch's default) through libtorch's optimizer base
//! class, the only way tch offers.
//!
//! On CUDA the update is multi-tensor, as PyTorch's default (`foreach`) Adam is there: the
//! variables and their moments become views of three flat buffers (`FlatBuffers`), and
//! one step is a gather of the gradients and seven kernels over all variables, instead of
//! seven kernel launches per variable (a few hundred variables make that milliseconds of
//! launches per step). The arithmetic is the same; on the CPU, where a launch costs little
//! and the gather would be an extra pass over memory, the per-variable loop stays
//! ([`Adam::multi_tensor`] overrides the choice).
//!
//! `t` counts the updates of each variable, as PyTorch's per-parameter `state['step']`: a
//! variable that first gets a gradient late (a two-stage method's second stage) starts its
//! bias correction at `t = 1`, not at the optimizer's step count.
//!
//! [`Adam::state`] / [`Adam::load_state`] save and restore the moments and the step counts
//! (resumed runs). [`LrSchedule`] gives the learning rate of each step.
use crate::error::{CoreError, Result};
use tch::nn::{self, OptimizerConfig};
use tch::{Kind, Tensor};

/// Adam's settings; `decoupled` selects AdamW's weight decay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// `false`: Adam (L2 term added to the gradient); `true`: AdamW (`p *= 1 - lr wd`).
    pub decoupled: bool,
}

impl AdamConfig {
    /// Adam with PyTorch's defaults (betas 0.9 / 0.999, eps 1e-8, no weight decay).
    pub fn adam(lr: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }
}

/// One trainable variable, its moments (`[m, v]`, created at its first update as PyTorch
/// does, so a model that is only scored holds no optimizer state) and its update count `t`.
struct Slot {
    param: Tensor,
    moments: Option<[Tensor; 2]>,
    updates: i32,
}

/// Adam / AdamW over the trainable variables of a VarStore (variables added to the store
/// later are picked up at the next step, as tch's optimizers do).
pub struct Adam {
    cfg: AdamConfig,
    vs_vars: std::sync::Arc<std::sync::Mutex<nn::Variables>>,
    slots: Vec<Slot>,
    /// Flat float buffer as large as the largest parameter, per step the denominator.
    scratch: Option<Tensor>,
    step: i32,
    /// libtorch's optimizer, used only to reset gradients to undefined.
    zeroer: nn::Optimizer,
    /// Multi-tensor updates: `None` = on CUDA only.
    multi_tensor: Option<bool>,
    /// The flat buffers of the multi-tensor update, once built.
    flat: Option<FlatBuffers>,
}

/// The variables that have gradients, and their two moments, as views of flat fp32 buffers
/// `[N]`, each variable's span in its own memory order (a channels-last weight stays
/// channels-last). Rebuilt from the variables' current values when the set of variables with
/// gradients changes (a two-stage method's second stage) or a member is no longer a view of
/// `params` (its data replaced by `set_data`, e.g. a later conversion to channels-last).
struct FlatBuffers {
    params: Tensor,
    m: Tensor,
    v: Tensor,
    /// The gathered gradients, then the denominator.
    scratch: Tensor,
    /// Per member: its slot, the order of its dimensions in memory ([`memory_order`]) and the
    /// data pointer its variable must still have.
    members: Vec<Member>,
}

struct Member {
    slot: usize,
    order: Vec<i64>,
    data_ptr: usize,
}

/// The dimensions of `t`, outermost in memory first (`[0, 2, 3, 1]` for a channels-last
/// `[N, C, H, W]`), when its elements fill one block of memory without gaps; `None` else.
fn memory_order(t: &Tensor) -> Option<Vec<i64>> {
    let (size, stride) = (t.size(), t.stride());
    let mut order: Vec<usize> = (0..size.len()).collect();
    order.sort_by(|&a, &b| stride[b].cmp(&stride[a]).then(a.cmp(&b)));
    let mut expected = 1;
    for &d in order.iter().rev() {
        if size[d] != 1 && stride[d] != expected {
            return None;
        }
        expected *= size[d];
    }
    Some(order.into_iter().map(|d| d as i64).collect())
}

/// `t`'s elements as `[numel]` in the memory order `order` (a view when `t` is laid out so).
fn flatten_in(t: &Tensor, order: &[i64]) -> Tensor {
    t.permute(order).reshape([-1])
}

/// The inverse of [`flatten_in`]: `span` `[numel]` viewed as a tensor of `size` whose memory
/// order is `order`.
fn unflatten_in(span: &Tensor, size: &[i64], order: &[i64]) -> Tensor {
    let permuted: Vec<i64> = order.iter().map(|&d| size[d as usize]).collect();
    let mut inverse = vec![0i64; order.len()];
    for (i, &d) in order.iter().enumerate() {
        inverse[d as usize] = i as i64;
    }
    span.view(permuted.as_slice()).permute(inverse)
}

impl Adam {
    pub fn new(vs: &nn::VarStore, cfg: AdamConfig) -> Result<Self> {
        let valid = cfg.lr >= 0.0
            && (0.0..1.0).contains(&cfg.beta1)
            && (0.0..1.0).contains(&cfg.beta2)
            && cfg.eps >= 0.0
            && cfg.weight_decay >= 0.0;
        if !valid {
            return Err(CoreError::Invalid(format!(
                "adam: lr, eps and weight decay must be >= 0 and betas in [0, 1), got {cfg:?}"
            )));
        }
        let zeroer = nn::Sgd::default()
            .build(vs, 0.0)
            .map_err(|e| CoreError::Invalid(format!("adam: {e}")))?;
        let mut adam = Self {
            cfg,
            vs_vars: vs.variables_.clone(),
            slots: Vec::new(),
            scratch: None,
            step: 0,
            zeroer,
            multi_tensor: None,
            flat: None,
        };
        adam.add_missing_variables();
        Ok(adam)
    }

    /// Multi-tensor updates on (`true`) or off, whatever the device (default: on CUDA only).
    pub fn multi_tensor(mut self, on: bool) -> Self {
        self.multi_tensor = Some(on);
        self
    }

    /// Whether the last step was a multi-tensor update (the variables with gradients are
    /// views of flat buffers).
    pub fn has_flat_buffers(&self) -> bool {
        self.flat.is_some()
    }

    pub fn lr(&self) -> f64 {
        self.cfg.lr
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    /// The optimizer's state, copied to the CPU: `step` (int64 scalar, steps so far) and, for
    /// each variable updated at least once, its moments `m.<i>` and `v.<i>` and its update
    /// count `t.<i>`, `i` its index among the VarStore's trainable variables (creation order).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("step".to_string(), Tensor::from(self.step as i64))];
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some([m, v]) = &slot.moments {
                let cpu = |t: &Tensor| t.to_device_(tch::Device::Cpu, t.kind(), false, true);
                out.push((format!("m.{i}"), cpu(m)));
                out.push((format!("v.{i}"), cpu(v)));
                out.push((format!("t.{i}"), Tensor::from(slot.updates as i64)));
            }
        }
        out
    }

    /// Restores what [`Adam::state`] returned for an optimizer over the same variables; a
    /// name, index or shape that does not fit is an error (and nothing is changed). A state
    /// without update counts (saved before they were kept) gives every variable with
    /// moments the step count.
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        self.add_missing_variables();
        let bad = |msg: String| CoreError::Invalid(format!("adam state: {msg}"));
        let mut step = None;
        let mut moments: Vec<[Option<Tensor>; 2]> =
            self.slots.iter().map(|_| [None, None]).collect();
        let mut updates: Vec<Option<i64>> = vec![None; self.slots.len()];
        for (name, t) in state {
            if name == "step" {
                step = Some(t.int64_value(&[]));
                continue;
            }
            let (which, index) = match name.split_once('.') {
                Some(("m", i)) => (0, i),
                Some(("v", i)) => (1, i),
                Some(("t", i)) => (2, i),
                _ => return Err(bad(format!("unknown entry `{name}`"))),
            };
            let i: usize = index
                .parse()
                .map_err(|_| bad(format!("unknown entry `{name}`")))?;
            let slot = self
                .slots
                .get(i)
                .ok_or_else(|| bad(format!("`{name}`: only {} variables", self.slots.len())))?;
            if which == 2 {
                updates[i] = Some(t.int64_value(&[]));
                continue;
            }
            if t.size() != slot.param.size() {
                return Err(bad(format!(
                    "`{name}` has shape {:?}, the variable {:?}",
                    t.size(),
                    slot.param.size()
                )));
            }
            moments[i][which] =
                Some(t.to_device_(slot.param.device(), slot.param.kind(), false, true));
        }
        let step = step.ok_or_else(|| bad("no `step`".into()))?;
        let mut restored = Vec::with_capacity(moments.len());
        for (i, (pair, t)) in moments.into_iter().zip(&updates).enumerate() {
            restored.push(match (pair, t) {
                ([Some(m), Some(v)], t) => Some(([m, v], t.unwrap_or(step))),
                ([None, None], None) => None,
                _ => {
                    return Err(bad(format!(
                        "variable {i} has not all of `m.{i}`, `v.{i}` (and `t.{i}`)"
                    )))
                }
            });
        }
        for (slot, r) in self.slots.iter_mut().zip(restored) {
            (slot.moments, slot.updates) = match r {
                Some((m, t)) => (Some(m), t as i32),
                None => (None, 0),
            };
        }
        // The flat moments are stale now: rebuilt from the slots at the next step.
        self.flat = None;
        self.step = step as i32;
        Ok(())
    }

    fn add_missing_variables(&mut self) {
        let vars = self.vs_vars.lock().expect("VarStore lock");
        for var in &vars.trainable_variables[self.slots.len().min(vars.trainable_variables.len())..]
        {
            self.slots.push(Slot {
                param: var.tensor.shallow_clone(),
                moments: None,
                updates: 0,
            });
            self.scratch = None;
            self.flat = None;
        }
    }

    /// Resets every gradient to undefined.
    pub fn zero_grad(&mut self) {
        self.zeroer.zero_grad();
    }

    /// `zero_grad`, `loss.backward()`, `step`.
    pub fn backward_step(&mut self, loss: &Tensor) {
        self.zero_grad();
        loss.backward();
        self.step();
    }

    /// One update of every variable that has a gradient.
    pub fn step(&mut self) {
        self.add_missing_variables();
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let AdamConfig {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
            decoupled,
        } = self.cfg;
        // p += m / d with d = -(sqrt(v) / bias2_sqrt + eps) / step_size = a sqrt(v) + b, the
        // bias corrections of a variable's update count t.
        let denominator = |t: i32| {
            let step_size = lr / (1.0 - beta1.powi(t));
            let bias2_sqrt = (1.0 - beta2.powi(t)).sqrt();
            (-1.0 / (step_size * bias2_sqrt), -eps / step_size)
        };
        for slot in &mut self.slots {
            if slot.param.grad().defined() {
                slot.updates += 1;
            }
        }
        let multi_tensor = self
            .multi_tensor
            .unwrap_or_else(|| (self.slots.first()).is_some_and(|s| s.param.device().is_cuda()));
        let per_slot: Vec<(f64, f64)> = self.slots.iter().map(|s| denominator(s.updates)).collect();
        if multi_tensor && self.step_flat(&per_slot) {
            return;
        }
        if self.scratch.is_none() {
            self.scratch = self.slots.first().map(|s| {
                let largest = self
                    .slots
                    .iter()
                    .map(|s| s.param.numel())
                    .max()
                    .unwrap_or(0);
                Tensor::empty([largest as i64], (Kind::Float, s.param.device()))
            });
        }
        for slot in &mut self.slots {
            let mut grad = slot.param.grad();
            if !grad.defined() {
                continue;
            }
            let mut param = slot.param.shallow_clone();
            if weight_decay != 0.0 {
                if decoupled {
                    let _ = param.g_mul_scalar_(1.0 - lr * weight_decay);
                } else {
                    grad = &grad + &param * weight_decay;
                }
            }
            let same_kind = param.kind() == Kind::Float;
            let mut scratch = match (&self.scratch, same_kind) {
                (Some(s), true) if s.device() == param.device() => s
                    .narrow(0, 0, param.numel() as i64)
                    .view(param.size().as_slice()),
                _ => param.empty_like(),
            };
            let (a, b) = denominator(slot.updates);
            let [m, v] = slot
                .moments
                .get_or_insert_with(|| [param.zeros_like(), param.zeros_like()]);
            let _ = m.lerp_(&grad, 1.0 - beta1);
            let _ = grad.mul_out(&scratch, &grad);
            let _ = v.lerp_(&scratch, 1.0 - beta2);
            let _ = v.sqrt_out(&scratch);
            let _ = scratch.g_mul_scalar_(a).g_add_scalar_(b);
            let _ = param.addcdiv_(m, &scratch);
        }
    }

    /// The multi-tensor update, with the denominator `a sqrt(v) + b` (`(a, b)` of each slot in
    /// `per_slot`: one affine pass when every member has the same, else one per member), of
    /// every variable that has a gradient; `false` (nothing changed) when the flat buffers
    /// cannot be built (a variable not fp32, not dense, or on another device): the
    /// per-variable loop then does the step.
    fn step_flat(&mut self, per_slot: &[(f64, f64)]) -> bool {
        let grads: Vec<(usize, Tensor)> = (self.slots.iter().enumerate())
            .map(|(i, slot)| (i, slot.param.grad()))
            .filter(|(_, grad)| grad.defined())
            .collect();
        let current = self.flat.as_ref().is_some_and(|flat| {
            flat.members.len() == grads.len()
                && flat.members.iter().zip(&grads).all(|(member, (i, _))| {
                    member.slot == *i && self.slots[*i].param.data_ptr() as usize == member.data_ptr
                })
        });
        if !current {
            let members: Vec<usize> = grads.iter().map(|(i, _)| *i).collect();
            self.flat = self.build_flat(&members);
        }
        let Some(flat) = &mut self.flat else {
            return false;
        };
        // Each member's span of the flat buffers and its (a, b).
        let mut offset = 0;
        let spans: Vec<(i64, i64, (f64, f64))> = (flat.members.iter())
            .map(|member| {
                let numel = self.slots[member.slot].param.numel() as i64;
                offset += numel;
                (offset - numel, numel, per_slot[member.slot])
            })
            .collect();
        let grads: Vec<Tensor> = (flat.members.iter().zip(&grads))
            .map(|(member, (_, grad))| flatten_in(grad, &member.order))
            .collect();
        let AdamConfig {
            lr,
            beta1,
            beta2,
            weight_decay,
            decoupled,
            ..
        } = self.cfg;
        let FlatBuffers {
            params,
            m,
            v,
            scratch,
            ..
        } = flat;
        let _ = Tensor::cat_out(scratch, &grads, 0);
        if weight_decay != 0.0 {
            if decoupled {
                let _ = params.g_mul_scalar_(1.0 - lr * weight_decay);
            } else {
                let _ = scratch.g_add_(&(&*params * weight_decay));
            }
        }
        let _ = m.lerp_(scratch, 1.0 - beta1);
        let _ = scratch.square_();
        let _ = v.lerp_(scratch, 1.0 - beta2);
        let _ = v.sqrt_out(scratch);
        match spans.iter().all(|span| span.2 == spans[0].2) {
            true => {
                let (a, b) = spans[0].2;
                let _ = scratch.g_mul_scalar_(a).g_add_scalar_(b);
            }
            false => {
                for &(start, numel, (a, b)) in &spans {
                    let _ = scratch
                        .narrow(0, start, numel)
                        .g_mul_scalar_(a)
                        .g_add_scalar_(b);
                }
            }
        }
        let _ = params.addcdiv_(m, scratch);
        true
    }

    /// Gathers the variables of the slots `members` and their moments (zeros where none yet)
    /// into flat buffers and makes each of them a view of its span; `None` when there are
    /// none, or one is not fp32, not dense, or not on the first one's device.
    fn build_flat(&mut self, members: &[usize]) -> Option<FlatBuffers> {
        let device = self.slots[*members.first()?].param.device();
        let mut orders = Vec::with_capacity(members.len());
        for &i in members {
            let p = &self.slots[i].param;
            if p.kind() != Kind::Float || p.device() != device {
                return None;
            }
            orders.push(memory_order(p)?);
        }
        let gather = |part: &dyn Fn(&Slot) -> Tensor| {
            let spans: Vec<Tensor> = (members.iter().zip(&orders))
                .map(|(&i, order)| flatten_in(&part(&self.slots[i]), order))
                .collect();
            Tensor::cat(&spans, 0)
        };
        let moment = |which: usize| {
            move |slot: &Slot| match &slot.moments {
                Some(moments) => moments[which].shallow_clone(),
                None => slot.param.zeros_like(),
            }
        };
        let params = gather(&|slot| slot.param.shallow_clone());
        let m = gather(&moment(0));
        let v = gather(&moment(1));
        let mut flat_members = Vec::with_capacity(members.len());
        let mut offset = 0;
        for (&i, order) in members.iter().zip(orders) {
            let slot = &mut self.slots[i];
            let (size, numel) = (slot.param.size(), slot.param.numel() as i64);
            let view = |flat: &Tensor| unflatten_in(&flat.narrow(0, offset, numel), &size, &order);
            // `set_data` changes the variable itself, which the VarStore and the model share.
            slot.param.set_data(&view(&params));
            slot.moments = Some([view(&m), view(&v)]);
            flat_members.push(Member {
                slot: i,
                order,
                data_ptr: slot.param.data_ptr() as usize,
            });
            offset += numel;
        }
        let scratch = params.empty_like();
        Some(FlatBuffers {
            params,
            m,
            v,
            scratch,
            members: flat_members,
        })
    }
}

/// The optimizer a runner drives: memad's Adam / AdamW, or one of tch's (SGD).
pub enum Optimizer {
    Adam(Adam),
    Tch(nn::Optimizer),
}

impl Optimizer {
    /// Zeroes the gradients, back-propagates `loss`, updates the variables.
    pub fn backward_step(&mut self, loss: &Tensor) {
        match self {
            Optimizer::Adam(o) => o.backward_step(loss),
            Optimizer::Tch(o) => o.backward_step(loss),
        }
    }

    /// Sets the learning rate of the next steps.
    pub fn set_lr(&mut self, lr: f64) {
        match self {
            Optimizer::Adam(o) => o.set_lr(lr),
            Optimizer::Tch(o) => o.set_lr(lr),
        }
    }

    /// [`Adam::state`]; empty for tch's optimizers, whose buffers (SGD's momentum) tch does
    /// not expose: a resumed SGD run restarts its momentum from zero.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        match self {
            Optimizer::Adam(o) => o.state(),
            Optimizer::Tch(_) => Vec::new(),
        }
    }

    /// [`Adam::load_state`]; tch's optimizers accept only an empty state.
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        match self {
            Optimizer::Adam(o) => o.load_state(state),
            Optimizer::Tch(_) if state.is_empty() => Ok(()),
            Optimizer::Tch(_) => Err(CoreError::Invalid(
                "this optimizer keeps no saved state".into(),
            )),
        }
    }
}

/// A learning-rate schedule over all steps of training (`total` = epochs x batches per
/// epoch), evaluated per step from the step index alone, so a resumed run needs no state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrSchedule {
    /// The base rate throughout.
    Constant,
    /// PyTorch's `CosineAnnealingLR(T_max = total, eta_min = min_lr)` stepped once per
    /// step: `min_lr + (lr - min_lr) (1 + cos(pi t / total)) / 2` at step `t` (0-based).
    Cosine { min_lr: f64 },
}

impl LrSchedule {
    /// The learning rate of step `step` (0-based) of `total`.
    pub fn lr(&self, base: f64, step: usize, total: usize) -> f64 {
        match *self {
            LrSchedule::Constant => base,
            LrSchedule::Cosine { min_lr } => {
                let t = step.min(total) as f64 / total.max(1) as f64;
                min_lr + (base - min_lr) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// A small least-squares problem; returns the loss of a VarStore's `w` `[3, 2]`, `b` `[2]`.
    fn store() -> (nn::VarStore, Tensor, Tensor) {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let _w = root.var_copy("w", &wave(&[3, 2], 0.0, 1.0));
        let _b = root.var_copy("b", &wave(&[2], 1.0, 1.0));
        (vs, wave(&[8, 3], 2.0, 1.0), wave(&[8, 2], 3.0, 1.0))
    }

    /// Fixed values of `shape` in `[-scale, scale]`, different for each `phase`. Tests that
    /// build the same store twice use this rather than `manual_seed` + `randn`: libtorch's
    /// generator is global, and a test running beside them on another thread would draw
    /// from it between the two builds.
    fn wave(shape: &[i64], phase: f64, scale: f64) -> Tensor {
        let n: i64 = shape.iter().product();
        ((Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.77 + phase).sin() * scale)
            .reshape(shape)
    }

    fn loss(vs: &nn::VarStore, x: &Tensor, y: &Tensor) -> Tensor {
        let vars = vs.variables();
        (x.matmul(&vars["w"]) + &vars["b"] - y)
            .square()
            .mean(Kind::Float)
    }

    fn flat(vs: &nn::VarStore) -> Vec<f64> {
        let vars = vs.variables();
        let all = Tensor::cat(&[vars["w"].flatten(0, -1), vars["b"].flatten(0, -1)], 0);
        Vec::try_from(all.to_kind(Kind::Double)).unwrap()
    }

    /// Five steps of ours against five of libtorch's C++ optimizer on the same problem.
    fn trajectories_match(cfg: AdamConfig) {
        let (vs_a, x, y) = store();
        let (vs_b, _, _) = store();
        let mut ours = Adam::new(&vs_a, cfg).unwrap();
        let mut theirs = if cfg.decoupled {
            nn::AdamW {
                beta1: cfg.beta1,
                beta2: cfg.beta2,
                wd: cfg.weight_decay,
                eps: cfg.eps,
                amsgrad: false,
            }
            .build(&vs_b, cfg.lr)
            .unwrap()
        } else {
            nn::Adam {
                beta1: cfg.beta1,
                beta2: cfg.beta2,
                wd: cfg.weight_decay,
                eps: cfg.eps,
                amsgrad: false,
            }
            .build(&vs_b, cfg.lr)
            .unwrap()
        };
        let start = flat(&vs_a);
        for _ in 0..5 {
            ours.backward_step(&loss(&vs_a, &x, &y));
            theirs.backward_step(&loss(&vs_b, &x, &y));
        }
        let (a, b) = (flat(&vs_a), flat(&vs_b));
        for ((p, q), s) in a.iter().zip(&b).zip(&start) {
            assert!((p - q).abs() < 1e-6, "{cfg:?}: {a:?} vs {b:?}");
            assert!((p - s).abs() > 1e-3, "the parameters moved");
        }
    }

    #[test]
    fn adam_and_adamw_follow_libtorch() {
        trajectories_match(AdamConfig {
            lr: 0.05,
            beta1: 0.5,
            ..AdamConfig::adam(0.05)
        });
        trajectories_match(AdamConfig {
            weight_decay: 0.1,
            ..AdamConfig::adam(0.02)
        });
        trajectories_match(AdamConfig {
            weight_decay: 0.1,
            decoupled: true,
            ..AdamConfig::adam(0.02)
        });
    }

    #[test]
    fn first_step_moves_each_weight_by_lr_against_its_gradient_sign() {
        // Step 1: m / bias1 = g and sqrt(v) / sqrt(bias2) = |g|, so p -= lr sign(g).
        let vs = nn::VarStore::new(Device::Cpu);
        let p = vs
            .root()
            .var_copy("p", &Tensor::from_slice(&[1.0f32, -2.0, 0.5]));
        let mut adam = Adam::new(&vs, AdamConfig::adam(0.1)).unwrap();
        let coeffs = Tensor::from_slice(&[3.0f32, -0.25, 2.0]);
        adam.backward_step(&(&p * &coeffs).sum(Kind::Float));
        let got: Vec<f32> = Vec::try_from(&p).unwrap();
        let want = [0.9f32, -1.9, 0.4];
        assert!(
            got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6),
            "{got:?}"
        );
        // Gradients are reset to undefined (not zeros) before the next backward.
        adam.zero_grad();
        assert!(!p.grad().defined());
    }

    #[test]
    fn variables_without_gradients_are_left_alone_and_late_ones_picked_up() {
        let vs = nn::VarStore::new(Device::Cpu);
        let a = vs.root().var_copy("a", &Tensor::from_slice(&[1.0f32, 2.0]));
        let mut adam = Adam::new(&vs, AdamConfig::adam(0.1)).unwrap();
        let late = vs.root().var_copy("late", &Tensor::from_slice(&[5.0f32]));
        assert!(adam.slots.iter().all(|s| s.moments.is_none()), "lazy state");
        adam.backward_step(&late.sum(Kind::Float));
        let created: Vec<bool> = adam.slots.iter().map(|s| s.moments.is_some()).collect();
        assert_eq!(created, [false, true]);
        assert_eq!(Vec::<f32>::try_from(&a).unwrap(), [1.0, 2.0]);
        let moved = Vec::<f32>::try_from(&late).unwrap()[0];
        assert!((moved - 4.9).abs() < 1e-6, "{moved}");
        assert!(Adam::new(&vs, AdamConfig::adam(-1.0)).is_err());
    }

    #[test]
    fn a_variable_first_updated_late_starts_its_own_bias_correction() {
        // PyTorch counts steps per parameter: the first update of a fresh variable moves it
        // by lr (m / sqrt(v) = sign(g) at t = 1), however many steps the optimizer took.
        for multi_tensor in [false, true] {
            let vs = nn::VarStore::new(Device::Cpu);
            let early = vs
                .root()
                .var_copy("early", &Tensor::from_slice(&[1.0f32, 2.0]));
            let late = vs.root().var_copy("late", &Tensor::from_slice(&[5.0f32]));
            let mut adam = Adam::new(&vs, AdamConfig::adam(0.1))
                .unwrap()
                .multi_tensor(multi_tensor);
            for _ in 0..5 {
                adam.backward_step(&early.square().sum(Kind::Float));
            }
            adam.backward_step(&(&late * 3.0).sum(Kind::Float));
            let moved = 5.0 - Vec::<f32>::try_from(&late).unwrap()[0];
            assert!(
                (moved - 0.1).abs() < 1e-6,
                "multi_tensor {multi_tensor}: {moved}"
            );
            let counts: Vec<i32> = adam.slots.iter().map(|s| s.updates).collect();
            assert_eq!(counts, [5, 1]);
            // Both at once: different counts, one step each as the per-variable loop does.
            let before = Vec::<f32>::try_from(&late).unwrap()[0];
            adam.backward_step(&(early.sum(Kind::Float) + (&late * 3.0).sum(Kind::Float)));
            assert_eq!(
                adam.slots.iter().map(|s| s.updates).collect::<Vec<_>>(),
                [6, 2]
            );
            let second = before - Vec::<f32>::try_from(&late).unwrap()[0];
            // t = 2 with a constant gradient: m / sqrt(v) corrected is again sign(g).
            assert!((second - 0.1).abs() < 1e-5, "{second}");
            let state = adam.state();
            let t: Vec<(String, i64)> = (state.iter())
                .filter(|(n, _)| n.starts_with("t."))
                .map(|(n, v)| (n.clone(), v.int64_value(&[])))
                .collect();
            assert_eq!(t, [("t.0".to_string(), 6), ("t.1".to_string(), 2)]);
        }
    }

    #[test]
    fn state_round_trip_continues_the_same_trajectory() {
        // Three steps, save, two more; against a fresh optimizer loaded after three steps.
        let (vs_a, x, y) = store();
        let (vs_b, _, _) = store();
        let cfg = AdamConfig {
            weight_decay: 0.05,
            decoupled: true,
            ..AdamConfig::adam(0.03)
        };
        let mut a = Adam::new(&vs_a, cfg).unwrap();
        for _ in 0..3 {
            a.backward_step(&loss(&vs_a, &x, &y));
        }
        let saved = a.state();
        assert_eq!(saved[0].0, "step");
        assert_eq!(saved[0].1.int64_value(&[]), 3);
        assert_eq!(saved.len(), 1 + 2 * 3, "m, v and t of w and b");
        tch::no_grad(|| {
            let trained = vs_a.variables();
            for (name, mut t) in vs_b.variables() {
                t.copy_(&trained[&name]);
            }
        });
        let mut b = Adam::new(&vs_b, cfg).unwrap();
        b.load_state(&saved).unwrap();
        for _ in 0..2 {
            a.backward_step(&loss(&vs_a, &x, &y));
            b.backward_step(&loss(&vs_b, &x, &y));
        }
        assert_eq!(flat(&vs_a), flat(&vs_b), "bit-identical after the restore");

        let mut bad: Vec<(String, Tensor)> = (saved.iter())
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        bad[1].1 = Tensor::zeros([7], (Kind::Float, Device::Cpu));
        let e = b.load_state(&bad).unwrap_err().to_string();
        assert!(
            e.contains("adam state: `m.0` has shape [7], the variable"),
            "{e}"
        );
        let e = b.load_state(&saved[1..]).unwrap_err().to_string();
        assert!(e.contains("adam state: no `step`"), "{e}");
        let e = b
            .load_state(&[
                ("step".into(), Tensor::from(1i64)),
                ("q.0".into(), Tensor::from(1f32)),
            ])
            .unwrap_err()
            .to_string();
        assert!(e.contains("adam state: unknown entry `q.0`"), "{e}");
    }

    /// A channels-last conv weight, a bias and a scalar: the layouts the flat buffers keep.
    fn conv_store() -> (nn::VarStore, Tensor) {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let _w = root.var_copy("w", &wave(&[4, 3, 3, 3], 0.0, 0.5));
        let _b = root.var_copy("b", &wave(&[4], 1.0, 0.5));
        let _s = root.var_copy("s", &(wave(&[1], 2.0, 0.1) + 1.0));
        crate::precision::make_channels_last(&vs);
        (vs, wave(&[2, 3, 6, 6], 3.0, 1.0))
    }

    fn conv_loss(vs: &nn::VarStore, x: &Tensor) -> Tensor {
        let v = vs.variables();
        let y = x.conv2d(&v["w"], Some(&v["b"]), [1, 1], [1, 1], [1, 1], 1) * &v["s"];
        (y - 0.3).square().mean(Kind::Float)
    }

    /// Every variable's values, by name.
    fn values(vs: &nn::VarStore) -> Vec<(String, Vec<f32>)> {
        let mut all: Vec<_> = (vs.variables().into_iter())
            .map(|(name, t)| (name, Vec::try_from(t.flatten(0, -1)).unwrap()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    fn assert_close(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)], what: &str) {
        for ((name, x), (_, y)) in a.iter().zip(b) {
            for (p, q) in x.iter().zip(y) {
                assert!(
                    (p - q).abs() <= 1e-6 * (1.0 + p.abs()),
                    "{what}: {name} {x:?} vs {y:?}"
                );
            }
        }
    }

    #[test]
    fn multi_tensor_updates_equal_the_per_variable_loop() {
        let configs = [
            AdamConfig {
                beta1: 0.5,
                ..AdamConfig::adam(0.05)
            },
            AdamConfig {
                weight_decay: 0.1,
                ..AdamConfig::adam(0.02)
            },
            AdamConfig {
                weight_decay: 0.1,
                decoupled: true,
                ..AdamConfig::adam(0.02)
            },
        ];
        for cfg in configs {
            let ((vs_a, x), (vs_b, _)) = (conv_store(), conv_store());
            let mut each = Adam::new(&vs_a, cfg).unwrap().multi_tensor(false);
            let mut flat = Adam::new(&vs_b, cfg).unwrap().multi_tensor(true);
            let start = values(&vs_a);
            for _ in 0..4 {
                each.backward_step(&conv_loss(&vs_a, &x));
                flat.backward_step(&conv_loss(&vs_b, &x));
            }
            assert!(each.flat.is_none() && flat.flat.is_some(), "{cfg:?}");
            let w = &vs_b.variables()["w"];
            assert!(crate::precision::is_channels_last(w), "the layout is kept");
            assert_eq!(w.data_ptr(), flat.slots[0].param.data_ptr(), "one variable");
            assert_close(&values(&vs_a), &values(&vs_b), &format!("{cfg:?}"));
            assert_ne!(values(&vs_a), start, "the variables moved");
        }
    }

    #[test]
    fn multi_tensor_survives_replaced_variables_missing_gradients_and_a_restore() {
        let cfg = AdamConfig::adam(0.05);
        let ((vs_a, x), (vs_b, _)) = (conv_store(), conv_store());
        let mut each = Adam::new(&vs_a, cfg).unwrap().multi_tensor(false);
        let mut flat = Adam::new(&vs_b, cfg).unwrap().multi_tensor(true);
        let both = |each: &mut Adam, flat: &mut Adam, loss: &dyn Fn(&nn::VarStore) -> Tensor| {
            each.backward_step(&loss(&vs_a));
            flat.backward_step(&loss(&vs_b));
        };
        both(&mut each, &mut flat, &|vs| conv_loss(vs, &x));
        // `w` replaced by a contiguous copy: no longer a view of the flat buffer.
        let make_contiguous = |vs: &nn::VarStore| {
            tch::no_grad(|| {
                let mut w = vs.variables()["w"].shallow_clone();
                w.set_data(&w.contiguous());
            })
        };
        make_contiguous(&vs_a);
        make_contiguous(&vs_b);
        let members = |adam: &Adam| -> Vec<usize> {
            let flat = adam.flat.as_ref().unwrap();
            flat.members.iter().map(|m| m.slot).collect()
        };
        let old_buffer = flat.flat.as_ref().unwrap().params.data_ptr();
        both(&mut each, &mut flat, &|vs| conv_loss(vs, &x));
        assert_ne!(
            flat.flat.as_ref().unwrap().params.data_ptr(),
            old_buffer,
            "rebuilt"
        );
        assert_eq!(members(&flat), [0, 1, 2]);
        // Only `b` has a gradient (a two-stage method's other stage): the flat update covers
        // `b` alone, then all three again.
        both(&mut each, &mut flat, &|vs| {
            vs.variables()["b"].square().sum(Kind::Float)
        });
        assert_eq!(members(&flat), [1]);
        both(&mut each, &mut flat, &|vs| conv_loss(vs, &x));
        assert_eq!(members(&flat), [0, 1, 2]);
        assert_close(&values(&vs_a), &values(&vs_b), "after the changes");

        let (vs_c, _) = conv_store();
        make_contiguous(&vs_c); // the same layout, hence the same convolution arithmetic
        tch::no_grad(|| {
            let trained = vs_b.variables();
            for (name, mut t) in vs_c.variables() {
                t.copy_(&trained[&name]);
            }
        });
        let mut restored = Adam::new(&vs_c, cfg).unwrap().multi_tensor(true);
        restored.load_state(&flat.state()).unwrap();
        for _ in 0..2 {
            flat.backward_step(&conv_loss(&vs_b, &x));
            restored.backward_step(&conv_loss(&vs_c, &x));
        }
        assert_eq!(
            values(&vs_b),
            values(&vs_c),
            "bit-identical after the restore"
        );
    }

    #[test]
    fn memory_order_finds_the_layout_of_dense_tensors_only() {
        let t = Tensor::zeros([2, 3, 4, 5], (Kind::Float, Device::Cpu));
        assert_eq!(memory_order(&t), Some(vec![0, 1, 2, 3]));
        let cl = crate::precision::channels_last(&t);
        assert_eq!(memory_order(&cl), Some(vec![0, 2, 3, 1]));
        assert_eq!(memory_order(&t.narrow(3, 0, 2)), None, "gaps");
        let flat = flatten_in(&cl, &[0, 2, 3, 1]);
        let back = unflatten_in(&flat, &[2, 3, 4, 5], &[0, 2, 3, 1]);
        assert_eq!(back.stride(), cl.stride());
    }

    #[test]
    fn cosine_schedule_matches_torch_cosine_annealing() {
        // torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4, eta_min=0.1), lr 1.0:
        // [1.0, 0.8681980515, 0.55, 0.2318019485] then 0.1.
        let s = LrSchedule::Cosine { min_lr: 0.1 };
        let got: Vec<f64> = (0..=4).map(|t| s.lr(1.0, t, 4)).collect();
        let want = [1.0, 0.868_198_051_5, 0.55, 0.231_801_948_5, 0.1];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-9, "{got:?}");
        }
        let zero = LrSchedule::Cosine { min_lr: 0.0 };
        assert!((zero.lr(0.002, 50, 100) - 0.001).abs() < 1e-15);
        assert_eq!(LrSchedule::Constant.lr(0.002, 50, 100), 0.002);
    }

    #[test]
    fn optimizer_set_lr_reaches_both_kinds() {
        let vs = nn::VarStore::new(Device::Cpu);
        let p = vs.root().var_copy("p", &Tensor::from_slice(&[1.0f32]));
        let mut adam = Optimizer::Adam(Adam::new(&vs, AdamConfig::adam(0.1)).unwrap());
        adam.set_lr(0.5);
        adam.backward_step(&p.sum(Kind::Float));
        assert!((Vec::<f32>::try_from(&p).unwrap()[0] - 0.5).abs() < 1e-6);
        let mut sgd = Optimizer::Tch(nn::Sgd::default().build(&vs, 0.1).unwrap());
        sgd.set_lr(0.25);
        sgd.backward_step(&p.sum(Kind::Float));
        assert!((Vec::<f32>::try_from(&p).unwrap()[0] - 0.25).abs() < 1e-6);
        assert!(sgd.state().is_empty());
        assert!(sgd.load_state(&[]).is_ok());
    }
}
