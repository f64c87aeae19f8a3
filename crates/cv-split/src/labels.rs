//! Class and group labels: encoding them as numpy's `np.unique` does, and typing values read
//! from text as numpy would type them.

use std::fmt;
use std::hash::Hash;

use rustc_hash::FxHashMap;

/// What a label or group may be: anything hashable with a total order (integers, strings, …)
/// that threads can share.
///
/// The order matters where scikit-learn sorts classes or groups (`np.unique`).
pub trait Label: Hash + Ord + Sync {}
impl<T: Hash + Ord + Sync + ?Sized> Label for T {}

/// Labels as small integer codes plus the count of each code.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub codes: Vec<u32>,
    pub counts: Vec<usize>,
}

impl Encoded {
    pub fn n_classes(&self) -> usize {
        self.counts.len()
    }
}

/// Codes in order of first appearance: the first label seen is 0 (StratifiedKFold's encoding).
/// Also returns the distinct values in code order.
///
/// Large inputs are encoded in two halves on two threads, then the second half's codes are
/// renumbered to continue the first's order of appearance.
pub(crate) fn encode_first_appearance<T: Hash + Eq + Sync>(values: &[T]) -> (Encoded, Vec<&T>) {
    const PARALLEL_FROM: usize = 1 << 16;
    if values.len() < PARALLEL_FROM {
        return encode_run(values);
    }
    let (head, tail) = values.split_at(values.len() / 2);
    let ((mut first, mut distinct), (second, tail_distinct)) =
        rayon::join(|| encode_run(head), || encode_run(tail));
    let index: FxHashMap<&T, u32> = distinct
        .iter()
        .enumerate()
        .map(|(code, &v)| (v, code as u32))
        .collect();
    let renumber: Vec<u32> = tail_distinct
        .iter()
        .zip(&second.counts)
        .map(|(&v, &count)| {
            let code = *index.get(v).unwrap_or(&(distinct.len() as u32));
            if code as usize == distinct.len() {
                distinct.push(v);
                first.counts.push(0);
            }
            first.counts[code as usize] += count;
            code
        })
        .collect();
    first
        .codes
        .extend(second.codes.iter().map(|&c| renumber[c as usize]));
    (first, distinct)
}

fn encode_run<T: Hash + Eq>(values: &[T]) -> (Encoded, Vec<&T>) {
    let mut index: FxHashMap<&T, u32> = FxHashMap::default();
    let mut distinct = Vec::new();
    let mut counts = Vec::new();
    let mut codes = Vec::with_capacity(values.len());
    for value in values {
        let next = distinct.len() as u32;
        let code = *index.entry(value).or_insert(next);
        if code == next {
            distinct.push(value);
            counts.push(0);
        }
        counts[code as usize] += 1;
        codes.push(code);
    }
    (Encoded { codes, counts }, distinct)
}

/// Codes in sorted order of the values, as `np.unique(..., return_inverse=True)` gives them.
/// Also returns the sorted distinct values.
pub(crate) fn encode_sorted<T: Label>(values: &[T]) -> (Encoded, Vec<&T>) {
    let (encoded, distinct) = encode_first_appearance(values);
    let mut order: Vec<usize> = (0..distinct.len()).collect();
    order.sort_by(|&a, &b| distinct[a].cmp(distinct[b]));
    let mut rank = vec![0u32; order.len()];
    for (r, &old) in order.iter().enumerate() {
        rank[old] = r as u32;
    }
    let codes = encoded.codes.iter().map(|&c| rank[c as usize]).collect();
    let counts = order.iter().map(|&old| encoded.counts[old]).collect();
    let sorted = order.iter().map(|&old| distinct[old]).collect();
    (Encoded { codes, counts }, sorted)
}

/// One value of a label or group column read from text.
///
/// A column in which every value parses as an integer is all `Int` and orders numerically, as a
/// numpy integer array does; otherwise it is all `Str` and orders as a numpy string array does.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(untagged)]
pub enum LabelValue {
    Int(i64),
    Str(String),
}

impl LabelValue {
    /// Types a whole column at once (values are trimmed of surrounding whitespace).
    ///
    /// ```
    /// use cv_split::LabelValue;
    /// let ints = LabelValue::parse_column(&["10", "9"]);
    /// assert!(ints[1] < ints[0]); // numeric order: 9 < 10
    /// let strs = LabelValue::parse_column(&["10", "9", "cat"]);
    /// assert!(strs[0] < strs[1]); // string order: "10" < "9"
    /// ```
    pub fn parse_column<S: AsRef<str>>(raw: &[S]) -> Vec<LabelValue> {
        let ints: Option<Vec<i64>> = raw.iter().map(|s| s.as_ref().trim().parse().ok()).collect();
        match ints {
            Some(ints) => ints.into_iter().map(LabelValue::Int).collect(),
            None => raw
                .iter()
                .map(|s| LabelValue::Str(s.as_ref().trim().to_owned()))
                .collect(),
        }
    }
}

impl fmt::Display for LabelValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelValue::Int(v) => v.fmt(f),
            LabelValue::Str(s) => s.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_appearance_and_sorted_codes() {
        let y = ["b", "a", "b", "c", "a"];
        let (first, distinct) = encode_first_appearance(&y);
        assert_eq!(first.codes, vec![0, 1, 0, 2, 1]);
        assert_eq!(first.counts, vec![2, 2, 1]);
        assert_eq!(distinct, vec![&"b", &"a", &"c"]);
        let (sorted, distinct) = encode_sorted(&y);
        assert_eq!(sorted.codes, vec![1, 0, 1, 2, 0]);
        assert_eq!(sorted.counts, vec![2, 2, 1]);
        assert_eq!(distinct, vec![&"a", &"b", &"c"]);
    }

    #[test]
    fn two_thread_encoding_equals_one_pass() {
        // Past the parallel threshold, with classes that first appear in the second half.
        let n = 300_000u64;
        let y: Vec<u64> = (0..n)
            .map(|i| {
                if i < n / 2 {
                    (i * 7919) % 5
                } else {
                    (i * 104_729) % 9
                }
            })
            .collect();
        let (parallel, p_distinct) = encode_first_appearance(&y);
        let (sequential, s_distinct) = encode_run(&y);
        assert_eq!(parallel.codes, sequential.codes);
        assert_eq!(parallel.counts, sequential.counts);
        assert_eq!(p_distinct, s_distinct);
        assert_eq!(p_distinct.len(), 9);
    }

    #[test]
    fn integer_columns_sort_numerically_and_mixed_ones_as_text() {
        let ints = LabelValue::parse_column(&[" 10", "9 ", "-1"]);
        assert_eq!(
            ints,
            vec![LabelValue::Int(10), LabelValue::Int(9), LabelValue::Int(-1)]
        );
        let mixed = LabelValue::parse_column(&["10", "x"]);
        assert_eq!(mixed[0], LabelValue::Str("10".into()));
    }
}
