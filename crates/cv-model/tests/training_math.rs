//! Training maths against PyTorch, plus the invariants the training loop relies on.
//!
//! The golden values come from `tests/golden/training_math.py` (torch 2.15, CPU, run by hand);
//! every input is a closed form the test regenerates here. Tensors are f32 on both sides; LR
//! schedule values are f64. Run with `--nocapture` to see the measured errors.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use cv_model::clip::{clip_grad_norm, grad_norm};
use cv_model::ema::{Ema, EmaBuffers, EmaConfig};
use cv_model::loss::CrossEntropyLoss;
use cv_model::optim::{AdamWConfig, Optimizer, OptimizerConfig, SgdConfig};
use cv_model::schedule::ScheduleConfig;
use cv_model::{ModelError, ParamKind, Params};
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const DEV: Device = Device::Cpu;

fn golden() -> Value {
    let text = include_str!("golden/training_math.json");
    serde_json::from_str(text).expect("golden JSON parses")
}

/// `offset + scale·sin(a·i + b)` in f64, rounded to f32: the script's `wave`.
fn wave(n: usize, a: f64, b: f64, scale: f64, offset: f64) -> Vec<f32> {
    (0..n)
        .map(|i| (offset + scale * (a * i as f64 + b).sin()) as f32)
        .collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("number")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// Golden f32 values. The JSON holds them exactly, but serde_json's default float parser is
/// only within an f64 ulp; rounding to f32 restores the exact value.
fn floats32(v: &Value) -> Vec<f64> {
    floats(v).into_iter().map(|x| f64::from(x as f32)).collect()
}

fn shape(spec: &Value) -> Vec<usize> {
    spec["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect()
}

fn from_spec(spec: &Value) -> Tensor {
    let shape = shape(spec);
    let n = shape.iter().product();
    let data = wave(
        n,
        f(&spec["a"]),
        f(&spec["b"]),
        f(&spec["scale"]),
        f(&spec["offset"]),
    );
    Tensor::from_vec(data, shape, &DEV).expect("tensor")
}

/// Gradient of the k-th variable (sorted-name index) at step t: the script's `grad_for`.
fn grad_for(k: usize, t: usize, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    let b = t as f64 + 0.37 * k as f64;
    Tensor::from_vec(wave(n, 0.7, b, 0.1, 0.0), shape, &DEV).expect("tensor")
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("f32 values")
        .into_iter()
        .map(f64::from)
        .collect()
}

fn kind(name: &str) -> ParamKind {
    match name {
        "weight" => ParamKind::Weight,
        "bias" => ParamKind::Bias,
        "norm" => ParamKind::Norm,
        "buffer" => ParamKind::Buffer,
        other => panic!("unknown kind {other}"),
    }
}

/// The golden model's variables at their initial values, with their init specs.
fn golden_params(g: &Value) -> (Params, Vec<(String, Value)>) {
    let mut params = Params::new();
    let mut specs = Vec::new();
    for p in g["params"].as_array().expect("params") {
        let name = p["name"].as_str().expect("name").to_string();
        let var = Var::from_tensor(&from_spec(&p["init"])).expect("var");
        params.insert(name.clone(), var, kind(p["kind"].as_str().expect("kind")));
        specs.push((name, p["init"].clone()));
    }
    (params, specs)
}

/// Gradients for every variable, the buffer included (an optimizer must ignore that one).
fn golden_grads(params: &Params, t: usize) -> GradStore {
    let mut grads = GradStore::default();
    for (k, (_, p)) in params.iter().enumerate() {
        grads.insert(p.var.as_tensor(), grad_for(k, t, p.var.dims()));
    }
    grads
}

/// Errors of one check over all its arrays:
/// - `abs`: largest |got − want|;
/// - `rel`: largest |got − want| / max|want| of that array (normwise relative error: the gate,
///   because values that are small through cancellation, e.g. a parameter crossing zero or a
///   logit gradient where softmax ≈ smoothed target, carry the rounding error of the larger
///   terms they were computed from);
/// - `elem`: largest |got − want| / |want| over elements with |want| ≥ 1% of the array's
///   largest (for information: how many ulps typical values are off).
#[derive(Debug, Default, Clone, Copy)]
struct Err2 {
    abs: f64,
    rel: f64,
    elem: f64,
}

impl Err2 {
    fn add(&mut self, got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
        for (g, w) in got.iter().zip(want) {
            let abs = (g - w).abs();
            self.abs = self.abs.max(abs);
            self.rel = self.rel.max(if scale > 0.0 { abs / scale } else { abs });
            if w.abs() >= 0.01 * scale && scale > 0.0 {
                self.elem = self.elem.max(abs / w.abs());
            }
        }
    }

    fn check(&self, what: &str, tol: f64) {
        eprintln!(
            "{what:<44} max abs {:.2e}  normwise rel {:.2e}  elementwise rel {:.2e}",
            self.abs, self.rel, self.elem
        );
        assert!(
            self.rel <= tol,
            "{what}: relative error {} > {tol}",
            self.rel
        );
    }
}

const TOL: f64 = 1e-6;

#[test]
fn cross_entropy_matches_torch() -> TestResult {
    let g = golden();
    let inputs = &g["loss"]["inputs"];
    let targets: Vec<u32> = inputs["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| t.as_u64().expect("target") as u32)
        .collect();
    let targets = Tensor::new(targets.as_slice(), &DEV)?;
    let weights: Vec<f32> = floats(&inputs["class_weights"])
        .into_iter()
        .map(|w| w as f32)
        .collect();
    for case in g["loss"]["cases"].as_array().expect("cases") {
        let logits = Var::from_tensor(&from_spec(&inputs[case["logits"].as_str().expect("key")]))?;
        let smoothing = f(&case["label_smoothing"]);
        let weighted = case["weighted"].as_bool().expect("bool");
        let loss_fn =
            CrossEntropyLoss::new(smoothing, weighted.then_some(weights.as_slice()), &DEV)?;
        let loss = loss_fn.forward(logits.as_tensor(), &targets)?;
        let grads = loss.backward()?;
        let grad = grads.get(logits.as_tensor()).expect("logits gradient");
        let what = format!(
            "CE {} ls={smoothing} weighted={weighted}",
            case["logits"].as_str().expect("key")
        );
        let mut e = Err2::default();
        e.add(
            &[f64::from(loss.to_scalar::<f32>()?)],
            &[f64::from(f(&case["loss"]) as f32)],
        );
        e.check(&format!("{what}: loss"), TOL);
        let mut e = Err2::default();
        e.add(&values(grad), &floats32(&case["grad"]));
        e.check(&format!("{what}: grad"), TOL);
    }
    Ok(())
}

fn optimizer_config(case: &Value) -> OptimizerConfig {
    let decay_norm_and_bias = case["decay_norm_and_bias"].as_bool().expect("bool");
    match case["type"].as_str().expect("type") {
        "sgd" => OptimizerConfig::Sgd(SgdConfig {
            momentum: f(&case["momentum"]),
            nesterov: case["nesterov"].as_bool().expect("bool"),
            weight_decay: f(&case["weight_decay"]),
            decoupled_weight_decay: case["decoupled_weight_decay"].as_bool().expect("bool"),
            decay_norm_and_bias,
        }),
        "adam-w" => {
            let betas = floats(&case["betas"]);
            OptimizerConfig::AdamW(AdamWConfig {
                betas: [betas[0], betas[1]],
                eps: f(&case["eps"]),
                weight_decay: f(&case["weight_decay"]),
                decay_norm_and_bias,
            })
        }
        other => panic!("unknown optimizer {other}"),
    }
}

#[test]
fn optimizers_match_torch() -> TestResult {
    let g = golden();
    let steps = g["steps"].as_u64().expect("steps") as usize;
    for case in g["optim"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let (params, _) = golden_params(&g);
        let buffer_before = values(
            params
                .get("bn.running_mean")
                .expect("buffer")
                .var
                .as_tensor(),
        );
        let mut opt = Optimizer::new(&optimizer_config(case))?;
        let base_lr = f(&case["lr"]);
        let mut e = Err2::default();
        for t in 1..=steps {
            let lr = base_lr * (1.0 - 0.1 * (t - 1) as f64);
            opt.step(&params, &golden_grads(&params, t), lr)?;
            let want = &case["history"][t - 1];
            for (pname, p) in params.trainable() {
                e.add(&values(p.var.as_tensor()), &floats32(&want[pname]));
            }
        }
        e.check(&format!("optimizer {name}: params, {steps} steps"), TOL);
        let buffer_after = values(
            params
                .get("bn.running_mean")
                .expect("buffer")
                .var
                .as_tensor(),
        );
        assert_eq!(buffer_before, buffer_after, "{name} changed a buffer");
    }
    Ok(())
}

#[test]
fn schedules_match_torch() -> TestResult {
    let g = golden();
    let epochs = g["schedule"]["epochs"].as_u64().expect("epochs") as usize;
    let base_lr = f(&g["schedule"]["base_lr"]);
    for case in g["schedule"]["cases"].as_array().expect("cases") {
        let config: ScheduleConfig = serde_json::from_value(case["config"].clone())?;
        let schedule = config.resolve(epochs)?;
        let got: Vec<f64> = (0..epochs)
            .map(|e| schedule.lr_at(base_lr, e, 0, 100))
            .collect();
        let mut e = Err2::default();
        e.add(&got, &floats(&case["lrs"]));
        e.check(
            &format!("schedule {} (f64)", case["name"].as_str().expect("name")),
            TOL,
        );
    }
    Ok(())
}

#[test]
fn clipping_matches_torch() -> TestResult {
    let g = golden();
    for case in g["clip"].as_array().expect("cases") {
        let (params, _) = golden_params(&g);
        let mut grads = golden_grads(&params, 1);
        let buffer = params
            .get("bn.running_mean")
            .expect("buffer")
            .var
            .as_tensor();
        let buffer_grad = values(grads.get(buffer).expect("grad"));
        let max_norm = f(&case["max_norm"]);
        let before = grad_norm(&params, &grads)?;
        let norm = clip_grad_norm(&params, &mut grads, max_norm)?;
        assert_eq!(before, norm);
        let mut e = Err2::default();
        e.add(&[norm], &[f64::from(f(&case["total_norm"]) as f32)]);
        for (name, p) in params.trainable() {
            let got = values(grads.get(p.var.as_tensor()).expect("grad"));
            e.add(&got, &floats32(&case["grads"][name]));
        }
        e.check(&format!("clip_grad_norm max_norm={max_norm}"), TOL);
        // Buffers neither count towards the norm nor get scaled.
        assert_eq!(values(grads.get(buffer).expect("grad")), buffer_grad);
    }
    Ok(())
}

#[test]
fn ema_matches_torch() -> TestResult {
    let g = golden();
    let steps = g["steps"].as_u64().expect("steps") as usize;
    for case in g["ema"]["cases"].as_array().expect("cases") {
        let (params, specs) = golden_params(&g);
        let decay = f(&case["decay"]);
        let use_buffers = case["use_buffers"].as_bool().expect("bool");
        let config = EmaConfig {
            decay,
            buffers: if use_buffers {
                EmaBuffers::Average
            } else {
                EmaBuffers::Copy
            },
        };
        let mut ema = Ema::new(&config, &params)?;
        let mut e = Err2::default();
        for t in 1..=steps {
            for (k, (name, spec)) in specs.iter().enumerate() {
                let var = &params.get(name).expect("param").var;
                // init + 2·grad(k, t), in f32 as the script does it.
                let value = (from_spec(spec) + (grad_for(k, t, var.dims()) * 2.0)?)?;
                var.set(&value)?;
            }
            ema.update(&params)?;
            for (name, _) in params.iter() {
                let got = values(ema.get(name).expect("ema tensor"));
                e.add(&got, &floats32(&case["history"][t - 1][name]));
            }
        }
        e.check(&format!("EMA decay={decay} use_buffers={use_buffers}"), TOL);
        assert_eq!(ema.num_updates(), steps as u64);
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Invariants
// ------------------------------------------------------------------------------------------

fn all_configs() -> Vec<OptimizerConfig> {
    let mut out = Vec::new();
    for (momentum, nesterov) in [(0.0, false), (0.9, false), (0.9, true)] {
        for decoupled in [false, true] {
            out.push(OptimizerConfig::Sgd(SgdConfig {
                momentum,
                nesterov,
                weight_decay: 0.1,
                decoupled_weight_decay: decoupled,
                decay_norm_and_bias: true,
            }));
        }
    }
    out.push(OptimizerConfig::AdamW(AdamWConfig {
        weight_decay: 0.1,
        decay_norm_and_bias: true,
        ..AdamWConfig::default()
    }));
    out
}

#[test]
fn buffers_and_params_without_gradients_never_change() -> TestResult {
    let g = golden();
    for config in all_configs() {
        let (params, _) = golden_params(&g);
        let before = params.tensors();
        let before: HashMap<String, Vec<f64>> = before
            .iter()
            .map(|(n, t)| (n.clone(), values(&t.copy().expect("copy"))))
            .collect();
        let mut opt = Optimizer::new(&config)?;
        for t in 1..=4 {
            let mut grads = golden_grads(&params, t);
            // fc.bias gets no gradient at all.
            grads.remove(params.get("fc.bias").expect("fc.bias").var.as_tensor());
            opt.step(&params, &grads, 0.5)?;
        }
        for name in ["bn.running_mean", "fc.bias"] {
            let now = values(params.get(name).expect("param").var.as_tensor());
            assert_eq!(now, before[name], "{config:?} changed {name}");
        }
        let now = values(params.get("fc.weight").expect("param").var.as_tensor());
        assert_ne!(now, before["fc.weight"], "{config:?} did not train");
        for (entry, _) in opt.state()? {
            assert!(
                !entry.ends_with("/fc.bias") && !entry.ends_with("/bn.running_mean"),
                "{config:?} kept state {entry}"
            );
        }
    }
    Ok(())
}

/// Runs `steps` steps from the golden init, with a closed-form LR.
fn train(params: &Params, opt: &mut Optimizer, ema: &mut Ema, range: std::ops::Range<usize>) {
    for t in range {
        let lr = 0.05 / (1.0 + t as f64);
        opt.step(params, &golden_grads(params, t), lr)
            .expect("step");
        ema.update(params).expect("ema");
    }
}

#[test]
fn resume_from_saved_state_is_bit_exact() -> TestResult {
    let g = golden();
    let dir = tempfile::tempdir()?;
    for config in all_configs() {
        let ema_config = EmaConfig {
            decay: 0.7,
            ..EmaConfig::default()
        };
        // Uninterrupted: 8 steps.
        let (params, _) = golden_params(&g);
        let mut opt = Optimizer::new(&config)?;
        let mut ema = Ema::new(&ema_config, &params)?;
        train(&params, &mut opt, &mut ema, 1..9);

        // Interrupted after 4 steps, everything saved to disk and loaded into fresh objects.
        let (first, _) = golden_params(&g);
        let mut opt1 = Optimizer::new(&config)?;
        let mut ema1 = Ema::new(&ema_config, &first)?;
        train(&first, &mut opt1, &mut ema1, 1..5);
        let path = dir.path().join("state.safetensors");
        let mut saved: HashMap<String, Tensor> = HashMap::new();
        for (name, t) in first.tensors() {
            saved.insert(format!("model/{name}"), t);
        }
        for (name, t) in opt1.state()? {
            saved.insert(format!("optim/{name}"), t);
        }
        for (name, t) in ema1.state()? {
            saved.insert(format!("ema/{name}"), t);
        }
        candle_core::safetensors::save(&saved, &path)?;
        drop((first, opt1, ema1));

        let loaded = candle_core::safetensors::load(&path, &DEV)?;
        let (second, _) = golden_params(&g);
        for (name, p) in second.iter() {
            p.var.set(&loaded[&format!("model/{name}")])?;
        }
        let part = |prefix: &str| -> Vec<(String, Tensor)> {
            loaded
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v.clone())))
                .collect()
        };
        let mut opt2 = Optimizer::new(&config)?;
        opt2.load_state(&second, part("optim/"))?;
        let mut ema2 = Ema::new(&ema_config, &second)?;
        ema2.load_state(&second, part("ema/"))?;
        train(&second, &mut opt2, &mut ema2, 5..9);

        for (name, p) in params.iter() {
            let want = p.var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            let got = second
                .get(name)
                .expect("param")
                .var
                .as_tensor()
                .flatten_all()?
                .to_vec1::<f32>()?;
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&got),
                bits(&want),
                "{config:?}: {name} differs after resume"
            );
            let ema_want = ema
                .get(name)
                .expect("ema")
                .flatten_all()?
                .to_vec1::<f32>()?;
            let ema_got = ema2
                .get(name)
                .expect("ema")
                .flatten_all()?
                .to_vec1::<f32>()?;
            assert_eq!(
                bits(&ema_got),
                bits(&ema_want),
                "{config:?}: EMA {name} differs"
            );
        }
        let names = |s: Vec<(String, Tensor)>| s.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(names(opt.state()?), names(opt2.state()?));
    }
    Ok(())
}

#[test]
fn load_state_rejects_foreign_or_mismatched_state() -> TestResult {
    let g = golden();
    let (params, _) = golden_params(&g);
    let mut sgd = Optimizer::new(&OptimizerConfig::default())?;
    let mut adamw = Optimizer::new(&OptimizerConfig::AdamW(AdamWConfig::default()))?;
    sgd.step(&params, &golden_grads(&params, 1), 0.1)?;
    adamw.step(&params, &golden_grads(&params, 1), 0.1)?;
    let sgd_state = sgd.state()?;
    let adamw_state = adamw.state()?;
    assert!(matches!(
        adamw.load_state(&params, sgd_state.clone()),
        Err(ModelError::BadTrainState { .. })
    ));
    assert!(matches!(
        sgd.load_state(&params, adamw_state.clone()),
        Err(ModelError::BadTrainState { .. })
    ));
    // A wrong shape, an unknown parameter, a buffer, an incomplete AdamW entry.
    let wrong_shape = vec![(
        "momentum_buffer/fc.weight".to_string(),
        Tensor::zeros(5, candle_core::DType::F32, &DEV)?,
    )];
    assert!(sgd.load_state(&params, wrong_shape).is_err());
    let unknown = vec![(
        "momentum_buffer/fc.nothing".to_string(),
        Tensor::zeros(5, candle_core::DType::F32, &DEV)?,
    )];
    assert!(sgd.load_state(&params, unknown).is_err());
    let buffer = vec![(
        "momentum_buffer/bn.running_mean".to_string(),
        Tensor::zeros(4, candle_core::DType::F32, &DEV)?,
    )];
    assert!(sgd.load_state(&params, buffer).is_err());
    let incomplete: Vec<_> = adamw_state
        .into_iter()
        .filter(|(n, _)| n != "step/fc.weight")
        .collect();
    assert!(adamw.load_state(&params, incomplete).is_err());
    // The right state loads.
    sgd.load_state(&params, sgd_state)?;
    Ok(())
}

#[test]
fn optimizer_config_round_trips_and_validates() -> TestResult {
    let configs = [
        OptimizerConfig::default(),
        OptimizerConfig::Sgd(SgdConfig {
            momentum: 0.8,
            nesterov: true,
            weight_decay: 5e-4,
            decoupled_weight_decay: true,
            decay_norm_and_bias: true,
        }),
        OptimizerConfig::AdamW(AdamWConfig::default()),
        OptimizerConfig::AdamW(AdamWConfig {
            betas: [0.8, 0.99],
            eps: 1e-6,
            weight_decay: 0.05,
            decay_norm_and_bias: true,
        }),
    ];
    for config in configs {
        let text = toml::to_string(&config)?;
        let back: OptimizerConfig = toml::from_str(&text)?;
        assert_eq!(back, config, "{text}");
        let json = serde_json::to_string(&config)?;
        assert_eq!(serde_json::from_str::<OptimizerConfig>(&json)?, config);
    }
    // Defaults, the kebab-case tag and its alias.
    let sgd: OptimizerConfig = toml::from_str("type = \"sgd\"")?;
    assert_eq!(sgd, OptimizerConfig::Sgd(SgdConfig::default()));
    let adamw: OptimizerConfig = toml::from_str("type = \"adam-w\"\nweight_decay = 0.1")?;
    assert!(matches!(adamw, OptimizerConfig::AdamW(c) if c.weight_decay == 0.1 && c.eps == 1e-8));
    // Unknown keys and types are errors that name them.
    let err = toml::from_str::<OptimizerConfig>("type = \"sgd\"\nmomentom = 0.9").unwrap_err();
    assert!(err.to_string().contains("momentom"), "{err}");
    let err = toml::from_str::<OptimizerConfig>("type = \"adamw\"\nnesterov = true").unwrap_err();
    assert!(err.to_string().contains("nesterov"), "{err}");
    assert!(toml::from_str::<OptimizerConfig>("type = \"rmsprop\"").is_err());
    // Out-of-range values.
    for bad in [
        "type = \"sgd\"\nmomentum = 1.0",
        "type = \"sgd\"\nmomentum = -0.1",
        "type = \"sgd\"\nmomentum = 0.0\nnesterov = true",
        "type = \"sgd\"\nweight_decay = -1e-4",
        "type = \"adamw\"\nbetas = [0.9, 1.0]",
        "type = \"adamw\"\neps = -1.0",
        "type = \"adamw\"\nweight_decay = nan",
    ] {
        let config: OptimizerConfig = toml::from_str(bad)?;
        let err = Optimizer::new(&config).expect_err(bad);
        assert!(
            matches!(err, ModelError::BadHyperparameter { .. }),
            "{bad}: {err}"
        );
        assert!(config.validate().is_err());
    }
    // A negative or non-finite learning rate is refused at the step.
    let (params, _) = golden_params(&golden());
    let mut opt = Optimizer::new(&OptimizerConfig::default())?;
    assert!(opt.step(&params, &golden_grads(&params, 1), -0.1).is_err());
    assert!(opt
        .step(&params, &golden_grads(&params, 1), f64::NAN)
        .is_err());
    Ok(())
}

#[test]
fn ema_config_round_trips_and_validates() -> TestResult {
    let config: EmaConfig = toml::from_str("decay = 0.99\nbuffers = \"copy\"")?;
    assert_eq!(config.buffers, EmaBuffers::Copy);
    assert_eq!(
        toml::from_str::<EmaConfig>(&toml::to_string(&config)?)?,
        config
    );
    assert!(toml::from_str::<EmaConfig>("decay = 0.99\nbufers = \"copy\"").is_err());
    let (params, _) = golden_params(&golden());
    assert!(Ema::new(
        &EmaConfig {
            decay: 1.5,
            ..EmaConfig::default()
        },
        &params
    )
    .is_err());
    // The EMA holds copies: training the model does not move a fresh EMA.
    let ema = Ema::new(&EmaConfig::default(), &params)?;
    let before = values(ema.get("fc.weight").expect("ema"));
    let mut opt = Optimizer::new(&OptimizerConfig::default())?;
    opt.step(&params, &golden_grads(&params, 1), 0.1)?;
    assert_eq!(values(ema.get("fc.weight").expect("ema")), before);
    Ok(())
}
