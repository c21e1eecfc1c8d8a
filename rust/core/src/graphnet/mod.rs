//! Graph network: an event-driven threshold network that grows, prunes and learns from reward
//! feedback (seed notes 001; see `docs/graphnet.md` for every choice made where they are open).
//!
//! Nodes are numbered `0..n_inputs` (inputs), then hidden, then outputs. Edges live in
//! struct-of-arrays form (`source`, `target`, `weight`, `activation`, `streak`), always sorted by
//! `(target, source)`, so the incoming edges of a node are one contiguous range (CSR by target,
//! `target_offsets`); a second index (`source_offsets` + `source_edges`) lists the outgoing
//! edges of each node (CSR by source). Both are rebuilt after every structural change.
//!
//! One step (`step`):
//! 1. firing: input `i` fires iff `observation[i] > input_threshold`; every other node fires iff
//!    its pool (the sum of `activation·weight` over its incoming edges, computed in the previous
//!    step's edge pass) exceeds `threshold`;
//! 2. novelty bonus (optional): a never-seen pattern of firing outputs injects a positive
//!    feedback signal at those outputs;
//! 3. edge pass, per edge: `activation += spike` if its source fired; the target's pool
//!    receives `activation·weight`; then `activation *= decay`. This pass runs over targets, in
//!    chunks taken from a work queue by `threads` workers: each target's pool is summed by one
//!    worker in a fixed order, so any number of threads gives bit-identical results;
//! 4. feedback: `on_reward` runs a whole pending wave; `every_step` advances it one level;
//! 5. weak edges are pruned (if a weight fell below `prune_below`), edges grow, and every
//!    `mega_prune_every` steps the graph is mega-pruned.
//!
//! Feedback is a level-synchronous breadth-first search over the reversed graph: every incoming
//! edge `e` of a node carrying signal `s` gets `w *= tanh(s·lr·a) + 1` and passes `s·a·w` (new
//! `w`) to its source; a source sums what it receives in one level, continues if the sum's
//! magnitude is at least `feedback_floor`, and receives nothing once it has been visited.

mod rng;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub use rng::SplitMix64;

use crate::error::{CoreError, CoreResult};

/// When feedback signals travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackMode {
    /// `feedback()` runs the whole breadth-first wave at once.
    OnReward,
    /// `feedback()` injects the signal; each step advances the wave by one edge (one BFS level),
    /// interleaved with forward firing (the notes' worker version).
    EveryStep,
}

impl FeedbackMode {
    pub const NAMES: [&'static str; 2] = ["on_reward", "every_step"];

    pub fn parse(name: &str) -> CoreResult<Self> {
        match name {
            "on_reward" => Ok(FeedbackMode::OnReward),
            "every_step" => Ok(FeedbackMode::EveryStep),
            other => Err(CoreError::config(
                "feedback_mode",
                format!("unknown value {other:?}; allowed: 'on_reward', 'every_step'"),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FeedbackMode::OnReward => "on_reward",
            FeedbackMode::EveryStep => "every_step",
        }
    }
}

/// Every setting of the network (see `docs/graphnet.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub n_inputs: usize,
    pub n_hidden: usize,
    pub n_outputs: usize,
    /// Firing threshold of hidden and output nodes (fires iff pool > threshold).
    pub threshold: f64,
    /// Input node `i` fires iff `observation[i] > input_threshold`.
    pub input_threshold: f64,
    /// Activation added to each outgoing edge of a firing node.
    pub spike: f64,
    /// Edge activations are multiplied by `decay` once per step.
    pub decay: f64,
    pub lr: f64,
    /// A feedback signal whose magnitude is below this stops.
    pub feedback_floor: f64,
    pub feedback_mode: FeedbackMode,
    /// Probability per non-input node per step of growing one new incoming edge.
    pub grow_prob: f64,
    /// New (initial and grown) weights are uniform in [weight_low, weight_high).
    pub weight_low: f64,
    pub weight_high: f64,
    /// Feedback never raises a weight above this (infinity: the notes' unbounded rule).
    pub weight_max: f64,
    /// Edges with weight < prune_below are removed.
    pub prune_below: f64,
    /// Prune automatically when feedback pushed a weight below `prune_below`.
    pub auto_prune: bool,
    /// Mega-prune every this many steps (0: only when called).
    pub mega_prune_every: u64,
    /// Edges whose positive-feedback streak reaches this are protected (0: off).
    pub protect_after: u32,
    /// Feedback signal injected at outputs whose firing pattern is new (0: off).
    pub novelty_bonus: f64,
    /// Worker threads of the edge pass (1: the calling thread only).
    pub threads: usize,
}

impl Config {
    pub fn new(n_inputs: usize, n_hidden: usize, n_outputs: usize) -> Self {
        Config {
            n_inputs,
            n_hidden,
            n_outputs,
            threshold: 1.0,
            input_threshold: 0.5,
            spike: 1.0,
            decay: 0.5,
            lr: 1.0,
            feedback_floor: 1e-3,
            feedback_mode: FeedbackMode::OnReward,
            grow_prob: 0.0,
            weight_low: 0.5,
            weight_high: 1.5,
            weight_max: f64::INFINITY,
            prune_below: 0.01,
            auto_prune: true,
            mega_prune_every: 0,
            protect_after: 0,
            novelty_bonus: 0.0,
            threads: 1,
        }
    }

    pub fn n_nodes(&self) -> usize {
        self.n_inputs + self.n_hidden + self.n_outputs
    }

    pub fn validate(&self) -> CoreResult<()> {
        if self.n_inputs == 0 || self.n_outputs == 0 {
            return Err(CoreError::config(
                "n_inputs/n_outputs",
                "need at least one input and one output node",
            ));
        }
        if self.n_nodes() > u32::MAX as usize / 2 {
            return Err(CoreError::config("n_nodes", "too many nodes"));
        }
        let finite = [
            ("threshold", self.threshold),
            ("input_threshold", self.input_threshold),
            ("spike", self.spike),
            ("lr", self.lr),
            ("weight_low", self.weight_low),
            ("weight_high", self.weight_high),
            ("prune_below", self.prune_below),
            ("novelty_bonus", self.novelty_bonus),
        ];
        for (field, value) in finite {
            if !value.is_finite() {
                return Err(CoreError::config(
                    field,
                    format!("must be finite, got {value}"),
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.decay) {
            return Err(CoreError::config(
                "decay",
                format!("must be in [0, 1], got {}", self.decay),
            ));
        }
        if !(0.0..=1.0).contains(&self.grow_prob) {
            return Err(CoreError::config(
                "grow_prob",
                format!("must be in [0, 1], got {}", self.grow_prob),
            ));
        }
        if !(self.feedback_floor > 0.0 && self.feedback_floor.is_finite()) {
            return Err(CoreError::config(
                "feedback_floor",
                format!("must be > 0, got {}", self.feedback_floor),
            ));
        }
        if self.weight_max.is_nan() || self.weight_max <= 0.0 {
            return Err(CoreError::config(
                "weight_max",
                format!("must be > 0 (infinity allowed), got {}", self.weight_max),
            ));
        }
        if self.weight_high < self.weight_low {
            return Err(CoreError::config("weight_high", "must be ≥ weight_low"));
        }
        if self.threads == 0 {
            return Err(CoreError::config("threads", "must be ≥ 1"));
        }
        Ok(())
    }
}

/// The edges of a graph as parallel arrays.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Edges {
    pub source: Vec<u32>,
    pub target: Vec<u32>,
    pub weight: Vec<f64>,
    pub activation: Vec<f64>,
    pub streak: Vec<u32>,
}

impl Edges {
    pub fn len(&self) -> usize {
        self.source.len()
    }

    pub fn is_empty(&self) -> bool {
        self.source.is_empty()
    }

    fn push(&mut self, source: u32, target: u32, weight: f64, activation: f64, streak: u32) {
        self.source.push(source);
        self.target.push(target);
        self.weight.push(weight);
        self.activation.push(activation);
        self.streak.push(streak);
    }

    fn permuted(&self, order: &[usize]) -> Edges {
        Edges {
            source: order.iter().map(|&i| self.source[i]).collect(),
            target: order.iter().map(|&i| self.target[i]).collect(),
            weight: order.iter().map(|&i| self.weight[i]).collect(),
            activation: order.iter().map(|&i| self.activation[i]).collect(),
            streak: order.iter().map(|&i| self.streak[i]).collect(),
        }
    }
}

/// The dynamic state besides the edges (for save/load).
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub pool: Vec<f64>,
    pub fired: Vec<bool>,
    pub rng_state: u64,
    pub steps: u64,
    /// Nodes of the pending feedback wave and their signals.
    pub frontier_nodes: Vec<u32>,
    pub frontier_signals: Vec<f64>,
    pub visited: Vec<bool>,
    /// Output firing patterns already seen by the novelty bonus, one row of n_outputs each.
    pub seen_patterns: Vec<Vec<bool>>,
    pub grown_total: u64,
    pub pruned_total: u64,
}

/// Counters of one `run` call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    pub edge_events: u64,
    pub grown: u64,
    pub pruned: u64,
}

/// One work-queue chunk: first target, its edges' activations, its targets' pools.
type WorkItem<'a> = (usize, &'a mut [f64], &'a mut [f64]);

/// Smallest number of edges a work-queue chunk holds (smaller chunks cost more than they save).
const CHUNK_EDGES: usize = 2048;

/// The network.
#[derive(Debug, Clone)]
pub struct GraphNet {
    config: Config,
    rng: SplitMix64,
    edges: Edges,
    /// CSR by target: incoming edges of node v are `target_offsets[v]..target_offsets[v + 1]`.
    target_offsets: Vec<usize>,
    /// CSR by source: outgoing edges of v are `source_edges[source_offsets[v]..source_offsets[v+1]]`.
    source_offsets: Vec<usize>,
    source_edges: Vec<u32>,
    /// Work-queue chunks: ranges of target nodes with at least CHUNK_EDGES edges each.
    chunks: Vec<(usize, usize)>,
    pool: Vec<f64>,
    fired: Vec<bool>,
    spike_out: Vec<f64>,
    frontier: Vec<(u32, f64)>,
    visited: Vec<bool>,
    pending: Vec<f64>,
    touched: Vec<u32>,
    is_touched: Vec<bool>,
    feedback_updates: u64,
    maybe_prunable: bool,
    seen_patterns: HashSet<Vec<bool>>,
    steps: u64,
    grown_total: u64,
    pruned_total: u64,
}

impl GraphNet {
    /// A random graph: every ordered pair (source ≠ target, target not an input) is an edge with
    /// probability `density`; weights uniform in [weight_low, weight_high). Draw order: targets
    /// ascending, sources ascending, one uniform per pair and one more per created edge.
    pub fn random(config: Config, density: f64, seed: u64) -> CoreResult<Self> {
        config.validate()?;
        if !(0.0..=1.0).contains(&density) {
            return Err(CoreError::config(
                "density",
                format!("must be in [0, 1], got {density}"),
            ));
        }
        let mut rng = SplitMix64::new(seed);
        let n = config.n_nodes();
        let mut edges = Edges::default();
        for target in config.n_inputs..n {
            for source in 0..n {
                if source == target {
                    continue;
                }
                if rng.uniform() < density {
                    let w = config.weight_low
                        + (config.weight_high - config.weight_low) * rng.uniform();
                    edges.push(source as u32, target as u32, w, 0.0, 0);
                }
            }
        }
        let mut net = Self::from_edges(config, edges, seed)?;
        net.rng = rng;
        Ok(net)
    }

    /// A network over the given edges (any order; sorted here). Rejects self-loops, duplicate
    /// pairs, edges into input nodes and node ids out of range.
    pub fn from_edges(config: Config, edges: Edges, seed: u64) -> CoreResult<Self> {
        config.validate()?;
        let n = config.n_nodes();
        let m = edges.source.len();
        for (field, len) in [
            ("target", edges.target.len()),
            ("weight", edges.weight.len()),
            ("activation", edges.activation.len()),
            ("streak", edges.streak.len()),
        ] {
            if len != m {
                return Err(CoreError::shape(
                    field,
                    format!("length {m} (as source)"),
                    format!("length {len}"),
                ));
            }
        }
        for e in 0..m {
            let (s, t) = (edges.source[e] as usize, edges.target[e] as usize);
            if s >= n || t >= n {
                return Err(CoreError::config(
                    "edges",
                    format!("edge {s}->{t}: node ids must be < {n}"),
                ));
            }
            if s == t {
                return Err(CoreError::config(
                    "edges",
                    format!("edge {s}->{t}: self-loops are not allowed"),
                ));
            }
            if t < config.n_inputs {
                return Err(CoreError::config(
                    "edges",
                    format!(
                        "edge {s}->{t}: input nodes (0..{}) take no incoming edges",
                        config.n_inputs
                    ),
                ));
            }
            if !edges.weight[e].is_finite() || !edges.activation[e].is_finite() {
                return Err(CoreError::config(
                    "edges",
                    format!("edge {s}->{t}: weight and activation must be finite"),
                ));
            }
        }
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by_key(|&e| (edges.target[e], edges.source[e]));
        let sorted = edges.permuted(&order);
        for e in 1..m {
            if sorted.target[e] == sorted.target[e - 1] && sorted.source[e] == sorted.source[e - 1]
            {
                return Err(CoreError::config(
                    "edges",
                    format!("duplicate edge {}->{}", sorted.source[e], sorted.target[e]),
                ));
            }
        }
        let mut net = GraphNet {
            rng: SplitMix64::new(seed),
            edges: sorted,
            target_offsets: Vec::new(),
            source_offsets: Vec::new(),
            source_edges: Vec::new(),
            chunks: Vec::new(),
            pool: vec![0.0; n],
            fired: vec![false; n],
            spike_out: vec![0.0; n],
            frontier: Vec::new(),
            visited: vec![false; n],
            pending: vec![0.0; n],
            touched: Vec::new(),
            is_touched: vec![false; n],
            feedback_updates: 0,
            maybe_prunable: false,
            seen_patterns: HashSet::new(),
            steps: 0,
            grown_total: 0,
            pruned_total: 0,
            config,
        };
        net.rebuild_index();
        Ok(net)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Settings that may change between steps (learning rate, growth, ...); node counts may not.
    pub fn set_config(&mut self, config: Config) -> CoreResult<()> {
        config.validate()?;
        if (config.n_inputs, config.n_hidden, config.n_outputs)
            != (
                self.config.n_inputs,
                self.config.n_hidden,
                self.config.n_outputs,
            )
        {
            return Err(CoreError::config("config", "node counts cannot change"));
        }
        self.config = config;
        self.rebuild_index();
        Ok(())
    }

    pub fn edges(&self) -> &Edges {
        &self.edges
    }

    pub fn n_edges(&self) -> usize {
        self.edges.len()
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    pub fn fired(&self) -> &[bool] {
        &self.fired
    }

    pub fn pool(&self) -> &[f64] {
        &self.pool
    }

    /// Incoming edge indices of `node`.
    pub fn incoming(&self, node: usize) -> std::ops::Range<usize> {
        self.target_offsets[node]..self.target_offsets[node + 1]
    }

    /// Outgoing edge indices of `node`.
    pub fn outgoing(&self, node: usize) -> &[u32] {
        &self.source_edges[self.source_offsets[node]..self.source_offsets[node + 1]]
    }

    /// Overwrite the weights (same order as `edges()`).
    pub fn set_weights(&mut self, weights: &[f64]) -> CoreResult<()> {
        if weights.len() != self.edges.len() {
            return Err(CoreError::shape(
                "weights",
                format!("length {}", self.edges.len()),
                format!("length {}", weights.len()),
            ));
        }
        self.edges.weight.copy_from_slice(weights);
        self.maybe_prunable = true;
        Ok(())
    }

    pub fn state(&self) -> State {
        let mut seen: Vec<Vec<bool>> = self.seen_patterns.iter().cloned().collect();
        seen.sort();
        State {
            pool: self.pool.clone(),
            fired: self.fired.clone(),
            rng_state: self.rng.state(),
            steps: self.steps,
            frontier_nodes: self.frontier.iter().map(|&(v, _)| v).collect(),
            frontier_signals: self.frontier.iter().map(|&(_, s)| s).collect(),
            visited: self.visited.clone(),
            seen_patterns: seen,
            grown_total: self.grown_total,
            pruned_total: self.pruned_total,
        }
    }

    pub fn set_state(&mut self, state: State) -> CoreResult<()> {
        let n = self.config.n_nodes();
        for (field, len) in [
            ("pool", state.pool.len()),
            ("fired", state.fired.len()),
            ("visited", state.visited.len()),
        ] {
            if len != n {
                return Err(CoreError::shape(
                    field,
                    format!("length {n}"),
                    format!("length {len}"),
                ));
            }
        }
        if state.frontier_nodes.len() != state.frontier_signals.len()
            || state.frontier_nodes.iter().any(|&v| v as usize >= n)
        {
            return Err(CoreError::config(
                "frontier",
                "nodes and signals must pair up, ids < n_nodes",
            ));
        }
        if state
            .seen_patterns
            .iter()
            .any(|p| p.len() != self.config.n_outputs)
        {
            return Err(CoreError::config(
                "seen_patterns",
                "every row must have n_outputs entries",
            ));
        }
        self.pool = state.pool;
        self.fired = state.fired;
        self.rng.set_state(state.rng_state);
        self.steps = state.steps;
        self.frontier = state
            .frontier_nodes
            .into_iter()
            .zip(state.frontier_signals)
            .collect();
        self.visited = state.visited;
        self.seen_patterns = state.seen_patterns.into_iter().collect();
        self.grown_total = state.grown_total;
        self.pruned_total = state.pruned_total;
        Ok(())
    }

    /// Forget all activity (activations, pools, firing, a pending feedback wave); keep weights,
    /// structure, the random state and the novelty memory.
    pub fn reset_activity(&mut self) {
        self.edges.activation.iter_mut().for_each(|a| *a = 0.0);
        self.pool.iter_mut().for_each(|p| *p = 0.0);
        self.fired.iter_mut().for_each(|f| *f = false);
        self.end_wave();
    }

    fn rebuild_index(&mut self) {
        let n = self.config.n_nodes();
        let m = self.edges.len();
        self.target_offsets = vec![0; n + 1];
        for &t in &self.edges.target {
            self.target_offsets[t as usize + 1] += 1;
        }
        for v in 0..n {
            self.target_offsets[v + 1] += self.target_offsets[v];
        }
        self.source_offsets = vec![0; n + 1];
        for &s in &self.edges.source {
            self.source_offsets[s as usize + 1] += 1;
        }
        for v in 0..n {
            self.source_offsets[v + 1] += self.source_offsets[v];
        }
        let mut next = self.source_offsets.clone();
        self.source_edges = vec![0; m];
        for e in 0..m {
            let s = self.edges.source[e] as usize;
            self.source_edges[next[s]] = e as u32;
            next[s] += 1;
        }
        // Work-queue chunks: contiguous target ranges of ≥ CHUNK_EDGES edges (or ≥ m / (4·threads)).
        let per_chunk = CHUNK_EDGES.max(m / (4 * self.config.threads).max(1));
        self.chunks.clear();
        let mut start = 0;
        for v in 0..n {
            if self.target_offsets[v + 1] - self.target_offsets[start] >= per_chunk {
                self.chunks.push((start, v + 1));
                start = v + 1;
            }
        }
        if start < n {
            self.chunks.push((start, n));
        }
    }

    /// One step; returns nothing, read `fired()` afterwards. See the module docs for the order.
    pub fn step(&mut self, observation: &[f64]) -> CoreResult<RunStats> {
        let ni = self.config.n_inputs;
        if observation.len() != ni {
            return Err(CoreError::shape(
                "observation",
                format!("length {ni}"),
                format!("length {}", observation.len()),
            ));
        }
        let mut stats = RunStats::default();
        // 1. firing
        for (i, &x) in observation.iter().enumerate() {
            self.fired[i] = x > self.config.input_threshold;
        }
        let threshold = self.config.threshold;
        for v in ni..self.config.n_nodes() {
            self.fired[v] = self.pool[v] > threshold;
        }
        // 2. novelty bonus
        if self.config.novelty_bonus != 0.0 {
            let first_output = self.config.n_nodes() - self.config.n_outputs;
            let pattern = self.fired[first_output..].to_vec();
            if pattern.iter().any(|&f| f) && !self.seen_patterns.contains(&pattern) {
                let at: Vec<u32> = (0..pattern.len())
                    .filter(|&k| pattern[k])
                    .map(|k| (first_output + k) as u32)
                    .collect();
                self.seen_patterns.insert(pattern);
                self.inject(self.config.novelty_bonus, &at)?;
            }
        }
        // 3. edge pass
        self.edge_pass();
        stats.edge_events = self.edges.len() as u64;
        // 4. feedback
        match self.config.feedback_mode {
            FeedbackMode::OnReward => self.run_wave(),
            FeedbackMode::EveryStep => {
                if !self.frontier.is_empty() {
                    self.feedback_level();
                    if self.frontier.is_empty() {
                        self.end_wave();
                    }
                }
            }
        }
        // 5. structure
        if self.config.auto_prune && self.maybe_prunable {
            stats.pruned += self.prune() as u64;
        }
        if self.config.grow_prob > 0.0 {
            stats.grown += self.grow() as u64;
        }
        self.steps += 1;
        if self.config.mega_prune_every > 0
            && self.steps.is_multiple_of(self.config.mega_prune_every)
        {
            stats.pruned += self.mega_prune() as u64;
        }
        Ok(stats)
    }

    /// Run `observations.len() / n_inputs` steps; writes which outputs fired (row-major
    /// `[T, n_outputs]`) and, if given, which nodes fired (`[T, n_nodes]`).
    pub fn run(
        &mut self,
        observations: &[f64],
        fired_outputs: &mut [bool],
        mut fired_nodes: Option<&mut [bool]>,
    ) -> CoreResult<RunStats> {
        let ni = self.config.n_inputs;
        let no = self.config.n_outputs;
        let n = self.config.n_nodes();
        if !observations.len().is_multiple_of(ni) {
            return Err(CoreError::shape(
                "observations",
                format!("[T, {ni}]"),
                format!("{} values", observations.len()),
            ));
        }
        let steps = observations.len() / ni;
        if fired_outputs.len() != steps * no {
            return Err(CoreError::shape(
                "fired_outputs",
                format!("[{steps}, {no}]"),
                format!("{} values", fired_outputs.len()),
            ));
        }
        if let Some(nodes) = fired_nodes.as_deref() {
            if nodes.len() != steps * n {
                return Err(CoreError::shape(
                    "fired_nodes",
                    format!("[{steps}, {n}]"),
                    format!("{} values", nodes.len()),
                ));
            }
        }
        let mut total = RunStats::default();
        for t in 0..steps {
            let stats = self.step(&observations[t * ni..(t + 1) * ni])?;
            total.edge_events += stats.edge_events;
            total.grown += stats.grown;
            total.pruned += stats.pruned;
            fired_outputs[t * no..(t + 1) * no].copy_from_slice(&self.fired[n - no..]);
            if let Some(nodes) = fired_nodes.as_deref_mut() {
                nodes[t * n..(t + 1) * n].copy_from_slice(&self.fired);
            }
        }
        Ok(total)
    }

    fn edge_pass(&mut self) {
        let decay = self.config.decay;
        let threads = self.config.threads.min(self.chunks.len()).max(1);
        // Branch-free: each source adds spike_out[source] (spike if it fired, else 0).
        let spike = self.config.spike;
        for (out, &f) in self.spike_out.iter_mut().zip(&self.fired) {
            *out = if f { spike } else { 0.0 };
        }
        let spike_out = &self.spike_out;
        let source = &self.edges.source;
        let weight = &self.edges.weight;
        let offsets = &self.target_offsets;
        // The pass over targets lo..hi, whose edges are offsets[lo]..offsets[hi]. Each target's
        // sum runs in edge order (bit-identical to the reference); four targets are interleaved
        // so that their four independent addition chains overlap in the pipeline.
        let pass = |lo: usize, activation: &mut [f64], pool: &mut [f64]| {
            let base = offsets[lo];
            let mut edge = |e: usize, sum: &mut f64| {
                let a = &mut activation[e - base];
                *a += spike_out[source[e] as usize];
                *sum += *a * weight[e];
                *a *= decay;
            };
            let mut k = 0;
            while k + 4 <= pool.len() {
                let v = lo + k;
                let starts = [offsets[v], offsets[v + 1], offsets[v + 2], offsets[v + 3]];
                let ends = [
                    offsets[v + 1],
                    offsets[v + 2],
                    offsets[v + 3],
                    offsets[v + 4],
                ];
                let common = (0..4).map(|j| ends[j] - starts[j]).min().unwrap_or(0);
                let mut sums = [0.0f64; 4];
                for i in 0..common {
                    for j in 0..4 {
                        edge(starts[j] + i, &mut sums[j]);
                    }
                }
                for j in 0..4 {
                    for e in starts[j] + common..ends[j] {
                        edge(e, &mut sums[j]);
                    }
                }
                pool[k..k + 4].copy_from_slice(&sums);
                k += 4;
            }
            while k < pool.len() {
                let v = lo + k;
                let mut sum = 0.0;
                for e in offsets[v]..offsets[v + 1] {
                    edge(e, &mut sum);
                }
                pool[k] = sum;
                k += 1;
            }
        };
        if threads <= 1 {
            let n = self.pool.len();
            pass(0, &mut self.edges.activation, &mut self.pool[..n]);
            return;
        }
        // Split activations and pools into the chunks' disjoint pieces; workers take chunk
        // indices from a shared counter (the work queue) until it runs dry.
        let mut work: Vec<Mutex<WorkItem<'_>>> = Vec::with_capacity(self.chunks.len());
        let mut activation_rest: &mut [f64] = &mut self.edges.activation;
        let mut pool_rest: &mut [f64] = &mut self.pool;
        for &(lo, hi) in &self.chunks {
            let (a, a_rest) =
                std::mem::take(&mut activation_rest).split_at_mut(offsets[hi] - offsets[lo]);
            let (p, p_rest) = std::mem::take(&mut pool_rest).split_at_mut(hi - lo);
            activation_rest = a_rest;
            pool_rest = p_rest;
            work.push(Mutex::new((lo, a, p)));
        }
        let next = AtomicUsize::new(0);
        let worker = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = work.get(i) else { break };
            let mut guard = item.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let (lo, ref mut a, ref mut p) = *guard;
            pass(lo, a, p);
        };
        std::thread::scope(|scope| {
            for _ in 1..threads {
                scope.spawn(worker);
            }
            worker();
        });
    }

    /// Add `signal` at nodes `at` to the feedback wave; in `on_reward` mode run the whole wave
    /// now (and prune if a weight fell below `prune_below`). Returns the number of edges updated.
    pub fn feedback(&mut self, signal: f64, at: &[u32]) -> CoreResult<usize> {
        let before = self.feedback_updates;
        self.inject(signal, at)?;
        if self.config.feedback_mode == FeedbackMode::OnReward {
            self.run_wave();
            if self.config.auto_prune && self.maybe_prunable {
                self.prune();
            }
        }
        Ok((self.feedback_updates - before) as usize)
    }

    fn inject(&mut self, signal: f64, at: &[u32]) -> CoreResult<()> {
        if !signal.is_finite() {
            return Err(CoreError::config(
                "signal",
                format!("must be finite, got {signal}"),
            ));
        }
        let n = self.config.n_nodes();
        if let Some(&bad) = at.iter().find(|&&v| v as usize >= n) {
            return Err(CoreError::config(
                "at",
                format!("node id {bad} out of range 0..{n}"),
            ));
        }
        if signal.abs() < self.config.feedback_floor {
            return Ok(());
        }
        for &v in at {
            self.visited[v as usize] = true;
            match self.frontier.iter_mut().find(|(u, _)| *u == v) {
                Some((_, s)) => *s += signal,
                None => self.frontier.push((v, signal)),
            }
        }
        Ok(())
    }

    fn run_wave(&mut self) {
        while !self.frontier.is_empty() {
            self.feedback_level();
        }
        self.end_wave();
    }

    fn end_wave(&mut self) {
        self.frontier.clear();
        self.visited.iter_mut().for_each(|v| *v = false);
    }

    /// One BFS level: update the incoming edges of every frontier node (in node order) and
    /// collect the signal each not-yet-visited source receives.
    fn feedback_level(&mut self) {
        let mut frontier = std::mem::take(&mut self.frontier);
        frontier.sort_by_key(|&(v, _)| v);
        let lr = self.config.lr;
        let protect_after = self.config.protect_after;
        let prune_below = self.config.prune_below;
        let weight_max = self.config.weight_max;
        for &(v, s) in &frontier {
            for e in self.incoming(v as usize) {
                let a = self.edges.activation[e];
                let protected = protect_after > 0 && self.edges.streak[e] >= protect_after;
                if s * a != 0.0 {
                    if s < 0.0 && protected {
                        self.edges.streak[e] -= 1;
                    } else {
                        self.edges.weight[e] =
                            (self.edges.weight[e] * ((s * lr * a).tanh() + 1.0)).min(weight_max);
                        self.edges.streak[e] = if s > 0.0 {
                            self.edges.streak[e].saturating_add(1)
                        } else {
                            0
                        };
                        if self.edges.weight[e] < prune_below {
                            self.maybe_prunable = true;
                        }
                    }
                }
                self.feedback_updates += 1;
                let u = self.edges.source[e] as usize;
                if !self.visited[u] {
                    if !self.is_touched[u] {
                        self.is_touched[u] = true;
                        self.touched.push(u as u32);
                    }
                    self.pending[u] += s * a * self.edges.weight[e];
                }
            }
        }
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        for &u in &touched {
            let signal = self.pending[u as usize];
            self.pending[u as usize] = 0.0;
            self.is_touched[u as usize] = false;
            if signal.abs() >= self.config.feedback_floor {
                self.visited[u as usize] = true;
                self.frontier.push((u, signal));
            }
        }
        touched.clear();
        self.touched = touched;
    }

    /// Total number of edge updates made by feedback so far.
    pub fn feedback_updates(&self) -> u64 {
        self.feedback_updates
    }

    pub fn grown_total(&self) -> u64 {
        self.grown_total
    }

    pub fn pruned_total(&self) -> u64 {
        self.pruned_total
    }

    /// Keep the edges where `keep` is true, add `extra` (any order), re-sort and re-index.
    fn restructure(&mut self, keep: Option<&[bool]>, extra: Edges) {
        let mut edges = match keep {
            Some(keep) => {
                let order: Vec<usize> = (0..self.edges.len()).filter(|&e| keep[e]).collect();
                self.edges.permuted(&order)
            }
            None => std::mem::take(&mut self.edges),
        };
        if !extra.is_empty() {
            for e in 0..extra.len() {
                edges.push(
                    extra.source[e],
                    extra.target[e],
                    extra.weight[e],
                    extra.activation[e],
                    extra.streak[e],
                );
            }
            let mut order: Vec<usize> = (0..edges.len()).collect();
            // Stable sort of an already sorted run plus a short tail: close to a linear merge.
            order.sort_by_key(|&e| (edges.target[e], edges.source[e]));
            edges = edges.permuted(&order);
        }
        self.edges = edges;
        self.rebuild_index();
    }

    fn is_protected(&self, e: usize) -> bool {
        self.config.protect_after > 0 && self.edges.streak[e] >= self.config.protect_after
    }

    /// Remove every unprotected edge with weight < prune_below; returns how many.
    pub fn prune(&mut self) -> usize {
        self.maybe_prunable = false;
        let below = self.config.prune_below;
        let keep: Vec<bool> = (0..self.edges.len())
            .map(|e| self.edges.weight[e] >= below || self.is_protected(e))
            .collect();
        let removed = keep.iter().filter(|&&k| !k).count();
        if removed > 0 {
            self.restructure(Some(&keep), Edges::default());
            self.pruned_total += removed as u64;
        }
        removed
    }

    /// Nodes reachable backwards (over incoming edges) from any output, plus inputs and outputs.
    pub fn used_nodes(&self) -> Vec<bool> {
        let n = self.config.n_nodes();
        let first_output = n - self.config.n_outputs;
        let mut used = vec![false; n];
        let mut queue: Vec<usize> = (first_output..n).collect();
        for &v in &queue {
            used[v] = true;
        }
        while let Some(v) = queue.pop() {
            for e in self.incoming(v) {
                let u = self.edges.source[e] as usize;
                if !used[u] {
                    used[u] = true;
                    queue.push(u);
                }
            }
        }
        used[..self.config.n_inputs]
            .iter_mut()
            .for_each(|u| *u = true);
        used
    }

    /// Remove every edge into a node that is not reachable backwards from any output (input
    /// nodes are always kept; protection does not apply); returns how many.
    pub fn mega_prune(&mut self) -> usize {
        let used = self.used_nodes();
        let keep: Vec<bool> = self
            .edges
            .target
            .iter()
            .map(|&t| used[t as usize])
            .collect();
        let removed = keep.iter().filter(|&&k| !k).count();
        if removed > 0 {
            self.restructure(Some(&keep), Edges::default());
            self.pruned_total += removed as u64;
        }
        removed
    }

    /// One growth round: each non-input node, in id order, draws u; if u < grow_prob it draws a
    /// source (uniform over the other nodes) and a weight (uniform in [weight_low, weight_high))
    /// and gains that incoming edge unless it already exists, or (with protection on) the node
    /// has a protected incoming edge. Returns the number of edges added.
    pub fn grow(&mut self) -> usize {
        let n = self.config.n_nodes();
        let (low, high) = (self.config.weight_low, self.config.weight_high);
        let mut extra = Edges::default();
        for target in self.config.n_inputs..n {
            if self.rng.uniform() >= self.config.grow_prob {
                continue;
            }
            let mut source = self.rng.below(n as u64 - 1) as usize;
            if source >= target {
                source += 1;
            }
            let w = low + (high - low) * self.rng.uniform();
            let range = self.incoming(target);
            let exists = self.edges.source[range.clone()]
                .binary_search(&(source as u32))
                .is_ok();
            let guarded =
                self.config.protect_after > 0 && range.clone().any(|e| self.is_protected(e));
            if !exists && !guarded {
                extra.push(source as u32, target as u32, w, 0.0, 0);
            }
        }
        let added = extra.len();
        if added > 0 {
            self.restructure(None, extra);
            self.grown_total += added as u64;
        }
        added
    }
}

#[cfg(test)]
mod tests;
