//! Core-level checks of the microcircuit kernel (the numpy equivalence lives in the Python
//! tests): layout bookkeeping, shape errors, and the self-predicting state.

use rnnlab_core::microcircuit::{
    counter_normal, run, Activation, BackwardModel, Config, Layout, Learning, NoiseMode, NoiseType,
    Regularizer,
};
use rnnlab_core::CoreError;

fn config(layers: &[usize]) -> Config {
    let n_layers = layers.len() - 1;
    let n_hidden = n_layers - 1;
    Config {
        layers: layers.to_vec(),
        skip: false,
        dt: 0.01,
        gl: 0.03,
        gbas: 0.1,
        gapi: 0.06,
        gden: 0.1,
        gni: 0.06,
        gntgt: 0.06,
        taur: 1.0,
        tau_hp: 0.1,
        tau_lo: 100.0,
        tau_xi: 0.1,
        xi_steps: 1,
        tbw_steps: 0,
        model: BackwardModel::FeedbackAlignment,
        noise_type: NoiseType::OrnsteinUhlenbeck,
        ou_scale: 1.0,
        noise_mode: NoiseMode::Const,
        activations: vec![Activation::Logistic; n_layers],
        eta_fw: vec![0.0; n_layers],
        eta_bw: vec![0.0; n_hidden],
        eta_ip: vec![0.0; n_hidden],
        eta_pi: vec![0.0; n_hidden],
        alpha: vec![0.0; n_hidden],
        noise_scale: vec![0.0; n_hidden],
        inter_low_pass: false,
        pyr_hi_pass: true,
        dwpp_low_pass: false,
        regularizer: Regularizer::Plain,
        use_activation: true,
    }
}

#[test]
fn layout_sizes_and_table_check() {
    let layout = Layout::new(&[2, 3, 4], false).unwrap();
    // pyramidal 8 fields × (3+4), interneurons 5 × 4, input 2, W and F 2×(3·2+4·3), WIP 4·3,
    // B 3·4, BPI 3·4
    assert_eq!(layout.size, 8 * 7 + 5 * 4 + 2 + 2 * (6 + 12) + 12 + 12 + 12);
    let mut table = vec![-1i64; 19 * 2];
    let err = layout.check_table(&table, 2).unwrap_err();
    assert!(matches!(
        err,
        CoreError::Config {
            field: "offsets",
            ..
        }
    ));
    for (field, offsets) in layout.offsets.iter().enumerate() {
        for (c, &o) in offsets.iter().enumerate() {
            table[field * 2 + c] = o as i64;
        }
    }
    layout.check_table(&table, 2).unwrap();
    assert!(Layout::new(&[2, 3], false).is_err());
}

#[test]
fn wrong_shapes_name_the_argument() {
    let cfg = config(&[2, 3, 1]);
    let layout = Layout::new(&cfg.layers, false).unwrap();
    let mut state = vec![0.0; layout.size];
    let err = run(
        &cfg,
        &layout,
        &mut state,
        &[0.0; 3],
        None,
        &[1],
        0,
        2,
        Learning::default(),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        CoreError::Shape {
            field: "inputs",
            ..
        }
    ));
    let mut bad = cfg.clone();
    bad.eta_fw = vec![1.0];
    let err = run(
        &bad,
        &layout,
        &mut state,
        &[0.0; 4],
        None,
        &[1],
        0,
        2,
        Learning::default(),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        CoreError::Shape {
            field: "eta_fw",
            ..
        }
    ));
}

#[test]
fn self_predicting_state_keeps_apical_potentials_at_zero() {
    let cfg = config(&[2, 3, 2]);
    let layout = Layout::new(&cfg.layers, false).unwrap();
    let o = &layout.offsets;
    let mut state = vec![0.0; layout.size];
    // W[0] (3×2), W[1] (2×3): arbitrary values; B (3×2); then the SPS: B^PI = −B and
    // W^IP = W[1]·gbas(gl+gden)/(gden(gl+gbas)) for the interneurons mirroring the output.
    let w0 = [0.3, -0.7, 1.1, 0.2, -0.4, 0.9];
    let w1 = [0.5, -1.2, 0.8, 0.1, 0.6, -0.3];
    let b = [0.2, -0.5, 0.7, 0.4, -0.1, 0.3];
    let scale = cfg.gbas * (cfg.gl + cfg.gden) / (cfg.gden * (cfg.gl + cfg.gbas));
    state[o[14][0]..o[14][0] + 6].copy_from_slice(&w0);
    state[o[14][1]..o[14][1] + 6].copy_from_slice(&w1);
    for k in 0..6 {
        state[o[17][0] + k] = b[k];
        state[o[18][0] + k] = -b[k];
        state[o[16][0] + k] = w1[k] * scale;
    }
    let steps = 5000;
    let inputs: Vec<f64> = (0..steps).flat_map(|_| [0.3, 0.8]).collect();
    run(
        &cfg,
        &layout,
        &mut state,
        &inputs,
        None,
        &[7],
        0,
        steps,
        Learning::default(),
    )
    .unwrap();
    for i in 0..3 {
        assert!(
            state[o[5][0] + i].abs() < 1e-9,
            "vapi[{i}] = {}",
            state[o[5][0] + i]
        );
    }
    assert!(counter_normal(1, 2, 3).is_finite());
}
