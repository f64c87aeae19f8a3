//! Learning-rate schedules as pure functions of the training position.
//!
//! candle has no schedulers. These reproduce `torch.optim.lr_scheduler` stepped once per epoch
//! (`StepLR`, `MultiStepLR`, `CosineAnnealingLR`, and `LinearLR` warm-up chained with
//! `SequentialLR`), in closed form: the LR depends only on (epoch, step in epoch), so a run
//! resumed from a checkpoint gets exactly the LR the uninterrupted run had, with no scheduler
//! state to save.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

fn default_gamma() -> f64 {
    0.1
}

fn default_warmup_start_factor() -> f64 {
    // torch.optim.lr_scheduler.LinearLR's default.
    1.0 / 3.0
}

/// A schedule as written in a config file. Every kind takes an optional linear warm-up:
///
/// - `warmup_epochs` (default 0): during epochs `0..warmup_epochs` the LR rises linearly from
///   `warmup_start_factor · base_lr` (default factor 1/3, as torch's `LinearLR`) to `base_lr`;
///   the schedule proper then starts at epoch `warmup_epochs` as if that were its epoch 0 (torch's
///   `SequentialLR([LinearLR(..), schedule], milestones=[warmup_epochs])`).
/// - `per_step` (default false): see [`LrSchedule::lr_at`].
///
/// ```
/// use cv_model::schedule::ScheduleConfig;
///
/// // The classic transfer-learning recipe: StepLR(step_size=7, gamma=0.1).
/// let config: ScheduleConfig = toml::from_str("type = \"step\"\nstep_size = 7").unwrap();
/// let schedule = config.resolve(25).unwrap();
/// assert_eq!(schedule.lr_at(0.001, 6, 0, 100), 0.001);
/// assert!((schedule.lr_at(0.001, 7, 0, 100) - 0.0001).abs() < 1e-18);
///
/// let cosine: ScheduleConfig = toml::from_str(
///     "type = \"cosine\"\nwarmup_epochs = 2\nwarmup_start_factor = 0.1",
/// )
/// .unwrap();
/// let schedule = cosine.resolve(10).unwrap(); // t_max defaults to 10 - 2 = 8 epochs
/// assert!((schedule.lr_at(1.0, 0, 0, 50) - 0.1).abs() < 1e-15);
/// assert_eq!(schedule.lr_at(1.0, 2, 0, 50), 1.0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ScheduleConfig {
    /// `base_lr` throughout.
    Constant {
        #[serde(default)]
        warmup_epochs: usize,
        #[serde(default = "default_warmup_start_factor")]
        warmup_start_factor: f64,
        #[serde(default)]
        per_step: bool,
    },
    /// `StepLR`: `base_lr · gamma^⌊e / step_size⌋`.
    Step {
        step_size: usize,
        #[serde(default = "default_gamma")]
        gamma: f64,
        #[serde(default)]
        warmup_epochs: usize,
        #[serde(default = "default_warmup_start_factor")]
        warmup_start_factor: f64,
        #[serde(default)]
        per_step: bool,
    },
    /// `MultiStepLR`: `base_lr · gamma^(number of milestones ≤ e)`.
    Multistep {
        milestones: Vec<usize>,
        #[serde(default = "default_gamma")]
        gamma: f64,
        #[serde(default)]
        warmup_epochs: usize,
        #[serde(default = "default_warmup_start_factor")]
        warmup_start_factor: f64,
        #[serde(default)]
        per_step: bool,
    },
    /// `CosineAnnealingLR`, closed form:
    /// `eta_min + (base_lr − eta_min)·(1 + cos(π·e / t_max)) / 2`. `t_max` defaults to the epochs
    /// after the warm-up (`total_epochs − warmup_epochs`), so the LR reaches `eta_min` at the end.
    /// Past `t_max` the cosine goes back up, as torch's does (no restarts are modelled).
    Cosine {
        #[serde(default)]
        t_max: Option<usize>,
        #[serde(default)]
        eta_min: f64,
        #[serde(default)]
        warmup_epochs: usize,
        #[serde(default = "default_warmup_start_factor")]
        warmup_start_factor: f64,
        #[serde(default)]
        per_step: bool,
    },
}

impl Default for ScheduleConfig {
    /// Constant, no warm-up.
    fn default() -> Self {
        ScheduleConfig::Constant {
            warmup_epochs: 0,
            warmup_start_factor: default_warmup_start_factor(),
            per_step: false,
        }
    }
}

impl ScheduleConfig {
    fn warmup(&self) -> (usize, f64, bool) {
        match *self {
            ScheduleConfig::Constant {
                warmup_epochs,
                warmup_start_factor,
                per_step,
            }
            | ScheduleConfig::Step {
                warmup_epochs,
                warmup_start_factor,
                per_step,
                ..
            }
            | ScheduleConfig::Multistep {
                warmup_epochs,
                warmup_start_factor,
                per_step,
                ..
            }
            | ScheduleConfig::Cosine {
                warmup_epochs,
                warmup_start_factor,
                per_step,
                ..
            } => (warmup_epochs, warmup_start_factor, per_step),
        }
    }

    /// Checks the values and fills in defaults that depend on the run length (`t_max`).
    pub fn resolve(&self, total_epochs: usize) -> Result<LrSchedule> {
        let bad =
            |field: &'static str, value: String, expected: String| ModelError::BadHyperparameter {
                field,
                value,
                expected,
            };
        if total_epochs == 0 {
            return Err(bad(
                "epochs",
                "0".into(),
                "at least 1 epoch for a learning-rate schedule".into(),
            ));
        }
        let (warmup_epochs, warmup_start_factor, per_step) = self.warmup();
        if warmup_epochs >= total_epochs {
            return Err(bad(
                "warmup_epochs",
                warmup_epochs.to_string(),
                format!("fewer than the {total_epochs} training epochs"),
            ));
        }
        if warmup_epochs > 0 && !(warmup_start_factor > 0.0 && warmup_start_factor <= 1.0) {
            return Err(bad(
                "warmup_start_factor",
                warmup_start_factor.to_string(),
                "in (0, 1], e.g. 0.1 (as torch's LinearLR)".into(),
            ));
        }
        let check_gamma = |gamma: f64| {
            if gamma.is_finite() && gamma > 0.0 {
                Ok(())
            } else {
                Err(bad(
                    "gamma",
                    gamma.to_string(),
                    "a finite factor > 0, e.g. 0.1".into(),
                ))
            }
        };
        let kind = match self {
            ScheduleConfig::Constant { .. } => Kind::Constant,
            ScheduleConfig::Step {
                step_size, gamma, ..
            } => {
                if *step_size == 0 {
                    return Err(bad(
                        "step_size",
                        "0".into(),
                        "at least 1 epoch, e.g. 7".into(),
                    ));
                }
                check_gamma(*gamma)?;
                Kind::Step {
                    step_size: *step_size,
                    gamma: *gamma,
                }
            }
            ScheduleConfig::Multistep {
                milestones, gamma, ..
            } => {
                if milestones.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(bad(
                        "milestones",
                        format!("{milestones:?}"),
                        "strictly increasing epochs, e.g. [30, 60, 90]".into(),
                    ));
                }
                check_gamma(*gamma)?;
                Kind::Multistep {
                    milestones: milestones.clone(),
                    gamma: *gamma,
                }
            }
            ScheduleConfig::Cosine { t_max, eta_min, .. } => {
                let t_max = t_max.unwrap_or(total_epochs - warmup_epochs);
                if t_max == 0 {
                    return Err(bad(
                        "t_max",
                        "0".into(),
                        "at least 1 epoch (leave it out for the epochs after the warm-up)".into(),
                    ));
                }
                if !(eta_min.is_finite() && *eta_min >= 0.0) {
                    return Err(bad(
                        "eta_min",
                        eta_min.to_string(),
                        "a finite LR >= 0 (usually 0 or well below base_lr)".into(),
                    ));
                }
                Kind::Cosine {
                    t_max,
                    eta_min: *eta_min,
                }
            }
        };
        Ok(LrSchedule {
            kind,
            warmup_epochs,
            warmup_start_factor,
            per_step,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Constant,
    Step { step_size: usize, gamma: f64 },
    Multistep { milestones: Vec<usize>, gamma: f64 },
    Cosine { t_max: usize, eta_min: f64 },
}

/// A validated schedule for a run of known length; see [`ScheduleConfig::resolve`].
#[derive(Debug, Clone, PartialEq)]
pub struct LrSchedule {
    kind: Kind,
    warmup_epochs: usize,
    warmup_start_factor: f64,
    per_step: bool,
}

impl LrSchedule {
    /// The LR for the optimizer step `step_in_epoch` (0-based) of epoch `epoch` (0-based), all
    /// in f64.
    ///
    /// With `per_step = false` (the default) the LR is constant within an epoch and equals what
    /// torch's scheduler gives when `scheduler.step()` is called once after each epoch;
    /// `step_in_epoch` and `steps_per_epoch` are ignored.
    ///
    /// With `per_step = true` the same closed forms are evaluated at the fractional epoch
    /// `epoch + step_in_epoch / steps_per_epoch`: the warm-up ramp and the cosine move smoothly
    /// every step, while step and multistep decays still happen exactly at epoch boundaries
    /// (their boundaries are whole epochs). The first step of each epoch always gets the
    /// per-epoch value, so both modes agree there. `steps_per_epoch = 0` is treated as 1.
    ///
    /// ```
    /// use cv_model::schedule::ScheduleConfig;
    ///
    /// let config = ScheduleConfig::Cosine {
    ///     t_max: Some(10),
    ///     eta_min: 0.0,
    ///     warmup_epochs: 0,
    ///     warmup_start_factor: 1.0,
    ///     per_step: true,
    /// };
    /// let schedule = config.resolve(10).unwrap();
    /// // Halfway through epoch 4 = fractional epoch 4.5.
    /// let lr = schedule.lr_at(0.1, 4, 50, 100);
    /// let expected = 0.1 * (1.0 + (std::f64::consts::PI * 4.5 / 10.0).cos()) / 2.0;
    /// assert!((lr - expected).abs() < 1e-15);
    /// ```
    pub fn lr_at(
        &self,
        base_lr: f64,
        epoch: usize,
        step_in_epoch: usize,
        steps_per_epoch: usize,
    ) -> f64 {
        let fraction = if self.per_step {
            let steps = steps_per_epoch.max(1);
            // A step index past the end of the epoch is clamped rather than spilling into the
            // next epoch's value.
            step_in_epoch.min(steps - 1) as f64 / steps as f64
        } else {
            0.0
        };
        let warmup = self.warmup_epochs;
        if epoch < warmup {
            // LinearLR closed form: start + (1 − start)·t / total_iters.
            let t = epoch as f64 + fraction;
            let factor =
                self.warmup_start_factor + (1.0 - self.warmup_start_factor) * t / warmup as f64;
            return base_lr * factor;
        }
        let e = epoch - warmup;
        match &self.kind {
            Kind::Constant => base_lr,
            Kind::Step { step_size, gamma } => base_lr * gamma.powf((e / step_size) as f64),
            Kind::Multistep { milestones, gamma } => {
                let passed = milestones.iter().take_while(|m| **m <= e).count();
                base_lr * gamma.powf(passed as f64)
            }
            Kind::Cosine { t_max, eta_min } => {
                let t = e as f64 + fraction;
                let cos = (std::f64::consts::PI * t / *t_max as f64).cos();
                eta_min + (base_lr - eta_min) * (1.0 + cos) / 2.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(s: &str) -> ScheduleConfig {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn per_step_agrees_at_epoch_starts_and_is_smooth_within() {
        let per_epoch = cfg("type = \"cosine\"\nwarmup_epochs = 3\nwarmup_start_factor = 0.1")
            .resolve(20)
            .unwrap();
        let per_step =
            cfg("type = \"cosine\"\nwarmup_epochs = 3\nwarmup_start_factor = 0.1\nper_step = true")
                .resolve(20)
                .unwrap();
        for epoch in 0..25 {
            assert_eq!(
                per_epoch.lr_at(0.1, epoch, 0, 10),
                per_step.lr_at(0.1, epoch, 0, 10)
            );
            // Per-epoch ignores the step; per-step moves between this epoch and the next.
            assert_eq!(
                per_epoch.lr_at(0.1, epoch, 7, 10),
                per_epoch.lr_at(0.1, epoch, 0, 10)
            );
            let mid = per_step.lr_at(0.1, epoch, 5, 10);
            let (a, b) = (
                per_step.lr_at(0.1, epoch, 0, 10),
                per_step.lr_at(0.1, epoch + 1, 0, 10),
            );
            assert!(mid >= a.min(b) - 1e-15 && mid <= a.max(b) + 1e-15);
        }
        // Warm-up ramps within epoch 0.
        assert!(per_step.lr_at(0.1, 0, 5, 10) > per_step.lr_at(0.1, 0, 0, 10));
        // Past the end of the epoch it is clamped to the last step.
        assert_eq!(
            per_step.lr_at(0.1, 1, 99, 10),
            per_step.lr_at(0.1, 1, 9, 10)
        );
        // Step decays still happen at the boundary only.
        let step = cfg("type = \"step\"\nstep_size = 2\nper_step = true")
            .resolve(10)
            .unwrap();
        assert_eq!(step.lr_at(1.0, 1, 9, 10), 1.0);
        assert!((step.lr_at(1.0, 2, 0, 10) - 0.1).abs() < 1e-16);
    }

    #[test]
    fn rejects_bad_values() {
        for (toml, total) in [
            ("type = \"step\"\nstep_size = 0", 10),
            ("type = \"step\"\nstep_size = 3\ngamma = -1.0", 10),
            ("type = \"multistep\"\nmilestones = [5, 3]", 10),
            ("type = \"cosine\"\nt_max = 0", 10),
            ("type = \"cosine\"\neta_min = -1.0", 10),
            ("type = \"constant\"\nwarmup_epochs = 10", 10),
            (
                "type = \"constant\"\nwarmup_epochs = 2\nwarmup_start_factor = 0.0",
                10,
            ),
            ("type = \"constant\"", 0),
        ] {
            assert!(cfg(toml).resolve(total).is_err(), "{toml} accepted");
        }
    }

    #[test]
    fn config_round_trips_and_rejects_unknown_keys() {
        for text in [
            "type = \"constant\"",
            "type = \"step\"\nstep_size = 7\ngamma = 0.5\nwarmup_epochs = 1",
            "type = \"multistep\"\nmilestones = [3, 6]\nper_step = true",
            "type = \"cosine\"\nt_max = 12\neta_min = 1e-5\nwarmup_start_factor = 0.2",
        ] {
            let config = cfg(text);
            let again: ScheduleConfig = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
            assert_eq!(config, again);
        }
        let err = toml::from_str::<ScheduleConfig>("type = \"step\"\nstep_size = 7\nt_max = 3")
            .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        assert!(toml::from_str::<ScheduleConfig>("type = \"exponential\"").is_err());
        // A step schedule needs its step size.
        assert!(toml::from_str::<ScheduleConfig>("type = \"step\"").is_err());
    }
}
