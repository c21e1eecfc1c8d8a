use super::*;

fn chain(w01: f64, w12: f64) -> GraphNet {
    // node 0 = input, 1 = hidden, 2 = output
    let edges = Edges {
        source: vec![1, 0],
        target: vec![2, 1],
        weight: vec![w12, w01],
        activation: vec![0.0, 0.0],
        streak: vec![0, 0],
    };
    GraphNet::from_edges(Config::new(1, 1, 1), edges, 0).unwrap()
}

#[test]
fn three_node_firing_and_decay_by_hand() {
    let mut net = chain(1.5, 1.2);
    // edges are sorted by target: e0 = 0->1, e1 = 1->2
    assert_eq!(net.edges().source, vec![0, 1]);
    let mut out = vec![false; 4];
    net.run(&[1.0, 0.0, 0.0, 0.0], &mut out, None).unwrap();
    // t0: input fires, pool1 = 1*1.5; t1: hidden fires (1.5 > 1), pool2 = 1*1.2, pool1 = .5*1.5;
    // t2: output fires (1.2 > 1); t3: pool2 = .5*1.2 = .6, nothing fires.
    assert_eq!(out, vec![false, false, true, false]);
    // activations: e0 = 1 * .5^4, e1 = 1 * .5^3
    assert_eq!(net.edges().activation, vec![0.0625, 0.125]);
    assert_eq!(net.pool()[1], 1.5 * 0.125);
    assert_eq!(net.pool()[2], 1.2 * 0.25);
}

#[test]
fn feedback_follows_the_reversed_graph_with_the_formula() {
    let mut net = chain(1.5, 1.2);
    let mut out = vec![false; 2];
    net.run(&[1.0, 0.0], &mut out, None).unwrap();
    let a = net.edges().activation.clone(); // e0: .25, e1: .5
    let mut cfg = net.config().clone();
    cfg.lr = 0.7;
    net.set_config(cfg).unwrap();
    let updated = net.feedback(0.9, &[2]).unwrap();
    assert_eq!(updated, 2);
    let w1 = 1.2 * ((0.9f64 * 0.7 * a[1]).tanh() + 1.0);
    let s1 = 0.9 * a[1] * w1;
    let w0 = 1.5 * ((s1 * 0.7 * a[0]).tanh() + 1.0);
    assert!((net.edges().weight[1] - w1).abs() < 1e-15);
    assert!((net.edges().weight[0] - w0).abs() < 1e-15);
}

#[test]
fn visited_nodes_do_not_receive_signal_again() {
    // 0 -> 1 -> 2(out), 2 -> 1 (a cycle), 0 -> 2
    let edges = Edges {
        source: vec![0, 2, 1, 0],
        target: vec![1, 1, 2, 2],
        weight: vec![1.0; 4],
        activation: vec![1.0; 4],
        streak: vec![0; 4],
    };
    let mut net = GraphNet::from_edges(Config::new(1, 1, 1), edges, 0).unwrap();
    let n = net.feedback(1.0, &[2]).unwrap();
    // level 0: node 2 (edges 1->2, 0->2); level 1: node 0 (no in-edges) and node 1 (0->1, 2->1)
    assert_eq!(n, 4);
    let f = 1.0f64.tanh() + 1.0;
    // 2->1 is updated (it is an incoming edge of node 1) but passes nothing to visited node 2.
    let w = &net.edges().weight;
    assert!((w[2] - f).abs() < 1e-15 && (w[3] - f).abs() < 1e-15);
    let s1 = f; // signal reaching node 1 = 1 * a * w
    let f1 = (s1).tanh() + 1.0;
    assert!((w[0] - f1).abs() < 1e-15 && (w[1] - f1).abs() < 1e-15);
}

#[test]
fn prune_and_mega_prune_remove_exactly_what_they_should() {
    // inputs 0; hidden 1, 2, 3; output 4.  0->1->4 reaches the output, 0->2, 2->3 do not.
    let edges = Edges {
        source: vec![0, 1, 0, 2, 3],
        target: vec![1, 4, 2, 3, 2],
        weight: vec![1.0, 0.005, 1.0, 1.0, 1.0],
        activation: vec![0.0; 5],
        streak: vec![0; 5],
    };
    let mut net = GraphNet::from_edges(Config::new(1, 3, 1), edges, 0).unwrap();
    // Reachable backwards from output 4: 1, then 0. Nodes 2 and 3 are not: their in-edges
    // 0->2, 3->2 and 2->3 go.
    assert_eq!(net.mega_prune(), 3);
    let e = net.edges();
    assert_eq!(
        (e.source.clone(), e.target.clone()),
        (vec![0, 1], vec![1, 4])
    );
    // prune removes the one weak edge, 1->4 (0.005 < 0.01), and nothing else.
    assert_eq!(net.prune(), 1);
    assert_eq!(
        (net.edges().source.clone(), net.edges().target.clone()),
        (vec![0], vec![1])
    );
    // After that, node 1 no longer reaches the output: mega-prune removes 0->1; inputs stay.
    assert_eq!(net.mega_prune(), 1);
    assert!(net.edges().is_empty());
    assert_eq!(net.used_nodes(), vec![true, false, false, false, true]);
}

#[test]
fn threads_give_identical_results() {
    let mut cfg = Config::new(8, 300, 4);
    cfg.grow_prob = 0.01;
    let obs: Vec<f64> = (0..8 * 50)
        .map(|k| ((k * 7919) % 13) as f64 / 12.0)
        .collect();
    let mut results = Vec::new();
    for threads in [1, 2, 3] {
        cfg.threads = threads;
        let mut net = GraphNet::random(cfg.clone(), 0.1, 42).unwrap();
        let mut out = vec![false; 50 * 4];
        net.run(&obs, &mut out, None).unwrap();
        net.feedback(-0.5, &[309, 310]).unwrap();
        net.run(&obs, &mut out, None).unwrap();
        results.push((out, net.edges().clone(), net.pool().to_vec()));
    }
    assert!(results[0].1.len() > 2 * CHUNK_EDGES);
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
}
