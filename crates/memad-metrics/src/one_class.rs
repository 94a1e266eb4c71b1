//! One-class classification protocol (e.g. CIFAR-10 one-vs-rest): an AUROC per class,
//! that class's samples being normal, and the unweighted mean over classes.

use crate::error::{MetricError, Result};
use crate::roc::auroc;

/// AUROC per class and their mean.
#[derive(Debug, Clone, PartialEq)]
pub struct PerClass {
    pub per_class: Vec<(String, f64)>,
    /// Unweighted mean of `per_class`.
    pub mean: f64,
}

/// AUROC of each `(class name, scores, labels)` (labels `true` = anomalous, i.e. not the
/// normal class) and their unweighted mean.
///
/// # Errors
/// `Empty` for no classes; any [`auroc`] error, inside `In { context: "class <name>" }`.
pub fn per_class_auroc(classes: &[(String, Vec<f32>, Vec<bool>)]) -> Result<PerClass> {
    if classes.is_empty() {
        return Err(MetricError::Empty);
    }
    let per_class = classes
        .iter()
        .map(|(name, scores, labels)| {
            auroc(scores, labels)
                .map(|a| (name.clone(), a))
                .map_err(|e| e.within(format!("class {name}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mean = per_class.iter().map(|(_, a)| a).sum::<f64>() / per_class.len() as f64;
    Ok(PerClass { per_class, mean })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_class_and_mean() {
        let classes = vec![
            ("cat".to_string(), vec![0.1, 0.9], vec![false, true]),
            (
                "dog".to_string(),
                vec![0.1, 0.4, 0.35, 0.8],
                vec![false, false, true, true],
            ),
        ];
        let r = per_class_auroc(&classes).unwrap();
        assert_eq!(
            r.per_class,
            vec![("cat".to_string(), 1.0), ("dog".to_string(), 0.75)]
        );
        assert_eq!(r.mean, 0.875);
    }

    #[test]
    fn errors_name_the_class() {
        let classes = vec![("cat".to_string(), vec![0.1, 0.9], vec![false, false])];
        assert_eq!(
            per_class_auroc(&classes),
            Err(MetricError::NoPositives.within("class cat"))
        );
        assert_eq!(per_class_auroc(&[]), Err(MetricError::Empty));
    }
}
