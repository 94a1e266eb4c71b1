//! The one-class protocol on a labelled classification dataset (MNIST, Fashion-MNIST,
//! CIFAR-10): one class is normal, the others are anomalies.
//!
//! - [`one_class_split`]: train on the training images of the normal class only; test on
//!   the whole test set, the normal class `Normal` and every other class `Anomalous`.
//! - [`one_class_split_with_anomalies`]: the unbalanced (semi-supervised) setting: the
//!   training set also holds labelled anomalies drawn deterministically from the other
//!   classes' training images, so that they make up `anomaly_fraction` of it.
//!
//! Samples are indices into the split's images and labels, sorted by index.
use crate::error::{DataError, Result};
use crate::loader::shuffled;
use crate::mvtec::Label;
use std::collections::BTreeSet;

/// One image of a one-class split: its index in its split, its class and its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassSample {
    pub index: usize,
    pub class: u8,
    pub label: Label,
}

/// The training and test samples of the one-class protocol for `normal_class`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneClassSplit {
    pub normal_class: u8,
    /// Indices into the training split: the normal class (plus labelled anomalies in the
    /// unbalanced setting).
    pub train: Vec<ClassSample>,
    /// Every image of the test split.
    pub test: Vec<ClassSample>,
}

impl OneClassSplit {
    /// The number of (normal, anomalous) samples of `samples`.
    pub fn counts(samples: &[ClassSample]) -> (usize, usize) {
        let anomalous = samples.iter().filter(|s| s.label.is_anomalous()).count();
        (samples.len() - anomalous, anomalous)
    }
}

fn label_of(class: u8, normal_class: u8) -> Label {
    if class == normal_class {
        Label::Normal
    } else {
        Label::Anomalous
    }
}

fn all_samples(labels: &[u8], normal_class: u8) -> Vec<ClassSample> {
    labels
        .iter()
        .enumerate()
        .map(|(index, &class)| ClassSample {
            index,
            class,
            label: label_of(class, normal_class),
        })
        .collect()
}

/// The one-class split for `normal_class` of a dataset with these training and test labels;
/// an error when the training split has no image of that class.
pub fn one_class_split(
    train_labels: &[u8],
    test_labels: &[u8],
    normal_class: u8,
) -> Result<OneClassSplit> {
    let train: Vec<ClassSample> = all_samples(train_labels, normal_class)
        .into_iter()
        .filter(|s| s.label == Label::Normal)
        .collect();
    if train.is_empty() {
        let classes: BTreeSet<u8> = train_labels.iter().copied().collect();
        return Err(DataError::InvalidArgument(format!(
            "normal class {normal_class} has no training images; classes present: {classes:?}"
        )));
    }
    Ok(OneClassSplit {
        normal_class,
        train,
        test: all_samples(test_labels, normal_class),
    })
}

/// [`one_class_split`] plus labelled anomalies in the training set: `n` images of the other
/// classes with `n / (n + normal) ≈ anomaly_fraction` (rounded), drawn from a permutation
/// seeded by `seed` (the same arguments give the same split). `anomaly_fraction` is in
/// `[0, 1)`; asking for more anomalies than the other classes have is an error.
pub fn one_class_split_with_anomalies(
    train_labels: &[u8],
    test_labels: &[u8],
    normal_class: u8,
    anomaly_fraction: f64,
    seed: u64,
) -> Result<OneClassSplit> {
    if !(0.0..1.0).contains(&anomaly_fraction) {
        return Err(DataError::InvalidArgument(format!(
            "anomaly_fraction must be in [0, 1), not {anomaly_fraction}"
        )));
    }
    let mut split = one_class_split(train_labels, test_labels, normal_class)?;
    let normal = split.train.len() as f64;
    let wanted = (anomaly_fraction * normal / (1.0 - anomaly_fraction)).round() as usize;
    let others: Vec<usize> = (0..train_labels.len())
        .filter(|&i| train_labels[i] != normal_class)
        .collect();
    if wanted > others.len() {
        return Err(DataError::InvalidArgument(format!(
            "data.anomaly_fraction = {anomaly_fraction} needs {wanted} anomalous training \
             images but the other classes have only {}",
            others.len()
        )));
    }
    let order = shuffled(others.len(), seed ^ (u64::from(normal_class) << 32));
    split
        .train
        .extend(order[..wanted].iter().map(|&k| ClassSample {
            index: others[k],
            class: train_labels[others[k]],
            label: Label::Anomalous,
        }));
    split.train.sort_by_key(|s| s.index);
    Ok(split)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_and_unbalanced_splits() {
        let train: Vec<u8> = (0..100).map(|i| (i % 5) as u8).collect();
        let test: Vec<u8> = (0..20).map(|i| (i % 5) as u8).collect();
        let s = one_class_split(&train, &test, 2).unwrap();
        assert_eq!(s.train.len(), 20);
        assert!(s.train.iter().all(|c| c.class == 2 && c.index % 5 == 2));
        assert_eq!(OneClassSplit::counts(&s.test), (4, 16));
        let u = one_class_split_with_anomalies(&train, &test, 2, 0.2, 7).unwrap();
        assert_eq!(OneClassSplit::counts(&u.train), (20, 5));
        assert!(u.train.windows(2).all(|w| w[0].index < w[1].index));
        assert!(u
            .train
            .iter()
            .all(|c| (c.class == 2) == (c.label == Label::Normal)));
        assert_eq!(
            u,
            one_class_split_with_anomalies(&train, &test, 2, 0.2, 7).unwrap()
        );
        assert_ne!(
            u,
            one_class_split_with_anomalies(&train, &test, 2, 0.2, 8).unwrap()
        );
        assert_eq!(
            one_class_split_with_anomalies(&train, &test, 2, 0.0, 7).unwrap(),
            s
        );
        let err = one_class_split_with_anomalies(&train, &test, 2, 1.0, 7)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("anomaly_fraction must be in [0, 1), not 1"),
            "{err}"
        );
        let err = one_class_split_with_anomalies(&train, &test, 2, 0.9, 7)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "data.anomaly_fraction = 0.9 needs 180 anomalous training images but the other \
                 classes have only 80"
            ),
            "{err}"
        );
        let err = one_class_split(&train, &test, 7).unwrap_err().to_string();
        assert!(err.contains("normal class 7"), "{err}");
    }
}
