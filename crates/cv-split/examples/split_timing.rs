//! Times the splitters on the benchmark workload and prints one JSON line per case:
//! `{"case": …, "seconds": [..], "checksum": …}`. Run by `cargo xtask bench split`, which
//! interleaves it with `benches/sklearn_split.py` and reports the ratio.
//!
//! `cargo run --release -p cv-split --example split_timing -- [REPEATS]`

use std::time::Instant;

use cv_split::{KFold, Split, StratifiedKFold};

#[path = "../benches/workload.rs"]
mod workload;

type Case<'a> = (&'static str, Box<dyn Fn() -> Split + 'a>);

fn time(repeats: usize, run: impl Fn() -> Split) -> (Vec<f64>, u64) {
    let mut seconds = Vec::with_capacity(repeats);
    let mut checksum = 0;
    for _ in 0..repeats {
        let start = Instant::now();
        let split = run();
        seconds.push(start.elapsed().as_secs_f64());
        checksum = workload::checksum(&split);
        drop(split);
    }
    (seconds, checksum)
}

fn main() {
    let repeats: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("REPEATS is a number"))
        .unwrap_or(3);
    let y = workload::labels();
    let cases: [Case; 3] = [
        (
            "StratifiedKFold(5, shuffle=True, random_state=0)",
            Box::new(|| {
                StratifiedKFold::new(5)
                    .unwrap()
                    .shuffle(0)
                    .split(&y)
                    .unwrap()
            }),
        ),
        (
            "StratifiedKFold(5)",
            Box::new(|| StratifiedKFold::new(5).unwrap().split(&y).unwrap()),
        ),
        (
            "KFold(5, shuffle=True, random_state=0)",
            Box::new(|| KFold::new(5).unwrap().shuffle(0).split(y.len()).unwrap()),
        ),
    ];
    for (case, run) in cases {
        let (seconds, checksum) = time(repeats, run);
        println!(
            "{}",
            serde_json::json!({"case": case, "seconds": seconds, "checksum": checksum.to_string()})
        );
    }
}
