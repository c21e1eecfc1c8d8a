//! Invariants of the graph network under random sequences of steps, feedback and structural
//! changes: edges stay sorted by (target, source) without duplicates, self-loops or edges into
//! inputs; both CSR indexes describe exactly the edge list; any thread count gives the same
//! result.

use rnnlab_core::graphnet::{Config, FeedbackMode, GraphNet, SplitMix64};

fn check_invariants(net: &GraphNet) {
    let config = net.config();
    let n = config.n_nodes();
    let e = net.edges();
    for k in 0..e.len() {
        assert!(
            (e.target[k] as usize) >= config.n_inputs,
            "edge into an input"
        );
        assert_ne!(e.source[k], e.target[k], "self-loop");
        assert!((e.source[k] as usize) < n && (e.target[k] as usize) < n);
        if k > 0 {
            assert!(
                (e.target[k - 1], e.source[k - 1]) < (e.target[k], e.source[k]),
                "edges not strictly sorted by (target, source)"
            );
        }
        assert!(e.weight[k].is_finite() && e.activation[k].is_finite());
    }
    let mut seen_out = vec![0usize; e.len()];
    for v in 0..n {
        for k in net.incoming(v) {
            assert_eq!(e.target[k] as usize, v);
        }
        for &k in net.outgoing(v) {
            assert_eq!(e.source[k as usize] as usize, v);
            seen_out[k as usize] += 1;
        }
    }
    assert!(
        seen_out.iter().all(|&c| c == 1),
        "outgoing index misses or repeats edges"
    );
}

fn scenario(threads: usize, mode: FeedbackMode, seed: u64) -> GraphNet {
    let mut config = Config::new(6, 200, 3);
    config.threads = threads;
    config.feedback_mode = mode;
    config.grow_prob = 0.02;
    config.protect_after = 3;
    config.novelty_bonus = 0.2;
    config.mega_prune_every = 13;
    config.decay = 0.7;
    let mut net = GraphNet::random(config, 0.2, seed).unwrap();
    // Several work-queue chunks (2048 edges each), so the threads really share work.
    assert!(net.n_edges() > 3 * 2048);
    let mut rng = SplitMix64::new(seed ^ 0xABCD);
    let mut out = vec![false; 8 * 3];
    for round in 0..30 {
        let obs: Vec<f64> = (0..8 * 6)
            .map(|_| (rng.uniform() > 0.6) as u8 as f64)
            .collect();
        net.run(&obs, &mut out, None).unwrap();
        let signal = if rng.uniform() < 0.5 { -1.0 } else { 0.7 };
        let at = [206 + rng.below(3) as u32];
        net.feedback(signal, &at).unwrap();
        if round % 7 == 6 {
            net.prune();
        }
        check_invariants(&net);
    }
    net
}

#[test]
fn invariants_hold_and_threads_agree() {
    for seed in 0..2 {
        for mode in [FeedbackMode::OnReward, FeedbackMode::EveryStep] {
            let single = scenario(1, mode, seed);
            assert!(single.grown_total() > 0 && single.feedback_updates() > 0);
            let threaded = scenario(3, mode, seed);
            assert_eq!(single.edges(), threaded.edges());
            assert_eq!(single.pool(), threaded.pool());
            assert_eq!(single.state(), threaded.state());
        }
    }
}

#[test]
fn bad_configs_name_the_field() {
    let mut config = Config::new(2, 2, 2);
    config.decay = 2.0;
    let error = GraphNet::random(config, 0.5, 0).unwrap_err();
    assert!(error.to_string().starts_with("decay:"));
    let mut config = Config::new(2, 2, 2);
    config.weight_max = 0.0;
    let error = GraphNet::random(config, 0.5, 0).unwrap_err();
    assert!(error.to_string().starts_with("weight_max:"));
    let error = GraphNet::random(Config::new(2, 2, 2), 1.5, 0).unwrap_err();
    assert!(error.to_string().starts_with("density:"));
}
