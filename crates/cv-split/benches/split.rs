//! `cargo bench -p cv-split`: the splitters on 1,000,000 imbalanced labels, folds materialised.
//! For the side-by-side figure against scikit-learn, see `cargo xtask bench split`.

use criterion::{criterion_group, criterion_main, Criterion};
use cv_split::{KFold, RandomState, StratifiedKFold};
use std::hint::black_box;

#[path = "workload.rs"]
mod workload;

fn splitters(c: &mut Criterion) {
    let y = workload::labels();
    let mut group = c.benchmark_group("1M labels, 10 imbalanced classes, 5 folds");
    group.sample_size(10);
    group.bench_function("StratifiedKFold(5, shuffle, 0)", |b| {
        let skf = StratifiedKFold::new(5).unwrap().shuffle(0);
        b.iter(|| black_box(skf.split(black_box(&y)).unwrap()))
    });
    group.bench_function("StratifiedKFold(5)", |b| {
        let skf = StratifiedKFold::new(5).unwrap();
        b.iter(|| black_box(skf.split(black_box(&y)).unwrap()))
    });
    group.bench_function("KFold(5, shuffle, 0)", |b| {
        let kf = KFold::new(5).unwrap().shuffle(0);
        b.iter(|| black_box(kf.split(y.len()).unwrap()))
    });
    group.bench_function("RandomState(0).permutation(1e6)", |b| {
        b.iter(|| black_box(RandomState::new(0).unwrap().permutation(1_000_000)))
    });
    group.finish();
}

criterion_group!(benches, splitters);
criterion_main!(benches);
