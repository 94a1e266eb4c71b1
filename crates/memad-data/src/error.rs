//! The crate's error type: one enum whose variants name the file or folder they are about.
use memad_core::ConfigError;
use std::path::PathBuf;

/// Everything that can go wrong reading, generating or cataloguing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// `error` is not a source: the message holds it, and a chain would print it twice.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "dataset root {path} does not exist or is not a folder (put the dataset there or fix `root` in datasets.toml)"
    )]
    RootMissing { path: PathBuf },
    #[error(
        "dataset `{name}`: its root {root} does not exist or is not a folder (put the dataset \
         there, or fix `root` of [{name}] in {catalog})"
    )]
    EntryRootMissing {
        name: String,
        root: PathBuf,
        catalog: PathBuf,
    },
    #[error(
        "category `{category}` not found in {root}{}; categories there: {}",
        did_you_mean(.category, .available),
        list(.available)
    )]
    CategoryMissing {
        root: PathBuf,
        category: String,
        available: Vec<String>,
    },
    #[error("{path} is missing: a category keeps its normal training images in train/good")]
    TrainMissing { path: PathBuf },
    /// `unread`: what the folder holds in formats memad does not read (empty, or starting
    /// with "; "): see [`DataError::no_images`].
    #[error("{path} holds no images (png, jpg, jpeg, bmp, tif, tiff){unread}")]
    NoImages { path: PathBuf, unread: String },
    /// `hint`: what else the user can do (empty, or starting with "; ").
    #[error(
        "anomalous test image {image} has no ground-truth mask: expected mask at {expected}{hint}"
    )]
    MaskMissing {
        image: PathBuf,
        expected: PathBuf,
        hint: &'static str,
    },
    /// A test file named as the mask of the test image beside it (`test/<defect>/000_mask.png`
    /// by `000.png`) and without a mask of its own: a mask in the wrong folder, which would
    /// be scored as a test image.
    #[error(
        "{file} is named as the mask of {image} beside it, but masks belong in \
         ground_truth/<defect>/ (here {place}) and a file in test/<defect>/ is scored as a test \
         image: move it there, or, if it is an image, give it a mask of its own ({own_mask})"
    )]
    MisplacedMask {
        file: PathBuf,
        image: PathBuf,
        place: PathBuf,
        own_mask: PathBuf,
    },
    /// An anomalous test image with more than one mask file (`ground_truth/<defect>/000.png`
    /// beside `000_mask.png`, or one mask in two formats): which one is meant is not guessed.
    #[error(
        "test image {image} has {} masks, {}: keep one mask per image (delete or move the \
         others); memad does not guess which one is meant",
        .masks.len(),
        .masks.iter().map(|m| m.display().to_string()).collect::<Vec<_>>().join(" and ")
    )]
    TwoMasks { image: PathBuf, masks: Vec<PathBuf> },
    /// Every problem a reader found in `category` (more than one; a reader goes on past
    /// those it can, so that a dataset can be fixed in one go): see [`DataError::into_errors`].
    #[error("{}", several(.category, .errors))]
    Several {
        category: String,
        errors: Vec<DataError>,
    },
    #[error("unexpected dataset layout at {path}: {message}")]
    Layout { path: PathBuf, message: String },
    #[error("{path}: corrupt or unreadable image: {message}")]
    Image { path: PathBuf, message: String },
    #[error(
        "mask {mask} is {}x{} but its image{} is {}x{}",
        .mask_size.0, .mask_size.1,
        .image.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default(),
        .image_size.0, .image_size.1
    )]
    MaskSize {
        mask: PathBuf,
        mask_size: (u32, u32),
        image: Option<PathBuf>,
        image_size: (u32, u32),
    },
    #[error("{path}: {message}")]
    Toml { path: PathBuf, message: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("unknown dataset `{name}` in {catalog}; known: {}", list(.known))]
    UnknownDataset {
        name: String,
        catalog: PathBuf,
        known: Vec<String>,
    },
    #[error("invalid synthetic dataset spec: {0}")]
    InvalidSpec(String),
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: frame labels do not match the frames: {message}")]
    FrameLabels { path: PathBuf, message: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{path} is not empty and was not made by the synthetic generator (no memad-synthetic.toml); refusing to overwrite it; delete it or choose another root")]
    NotSynthetic { path: PathBuf },
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}

/// At most this many of the errors of a [`DataError::Several`] are printed.
const SHOWN_ERRORS: usize = 20;

fn several(category: &str, errors: &[DataError]) -> String {
    let mut text = format!(
        "{} problems in category `{category}` (`memad datasets check` lists every \
         category's, with what it finds in the files themselves):",
        errors.len()
    );
    // Writing to a `String` does not fail.
    let _ = write_capped(&mut text, "  ", errors, SHOWN_ERRORS, "");
    text
}

/// Writes the first `shown` of `items`, each on a new line after `indent`, then, when there
/// are more, `... and <how many> more<after>` on one more line.
pub(crate) fn write_capped<T: std::fmt::Display>(
    out: &mut impl std::fmt::Write,
    indent: &str,
    items: &[T],
    shown: usize,
    after: &str,
) -> std::fmt::Result {
    for item in items.iter().take(shown) {
        write!(out, "\n{indent}{item}")?;
    }
    if items.len() > shown {
        write!(out, "\n{indent}... and {} more{after}", items.len() - shown)?;
    }
    Ok(())
}

/// ` (did you mean `x`?)` for the candidate nearest to `value` in edit distance when it is
/// at most a third of `value`'s length away (at least 1, at most 3) and not a name of the
/// same length replaced whole (class `3` is no typo of class `0`, `1` may be of `01`),
/// letter case ignored (`CABLE` is `cable`); empty otherwise.
pub fn did_you_mean(value: &str, candidates: &[String]) -> String {
    let value = value.to_lowercase();
    let length = value.chars().count();
    let limit = (length / 3).clamp(1, 3);
    let replaced_whole = |d: usize, c: &str| d == length && c.chars().count() == length;
    candidates
        .iter()
        .map(|c| (edit_distance(&value, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= limit && !replaced_whole(*d, c))
        .min()
        .map_or(String::new(), |(_, c)| format!(" (did you mean `{c}`?)"))
}

/// Edit distance (optimal string alignment): the fewest single-character insertions,
/// deletions, substitutions and swaps of two neighbours that turn `a` into `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // d[i][j]: the distance between the first i characters of a and the first j of b.
    let mut d: Vec<Vec<usize>> = (0..=a.len())
        .map(|i| (0..=b.len()).map(|j| if i == 0 { j } else { i }).collect())
        .collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let substitute = d[i - 1][j - 1] + usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = substitute.min(d[i - 1][j] + 1).min(d[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

impl DataError {
    /// [`DataError::NoImages`] of the folder `path`, naming the image files in it that memad
    /// skips ([`crate::image_io::is_unread_image_path`]: WebP, GIF, ...), if any.
    pub fn no_images(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let files = crate::mvtec::entries(&path).map_or(Vec::new(), |(_, files)| files);
        let unread: Vec<PathBuf> = (files.into_iter())
            .filter(|f| crate::image_io::is_unread_image_path(f))
            .collect();
        let unread = match unread.is_empty() {
            true => String::new(),
            false => format!(
                "; it holds {} file(s) in formats memad does not read: convert them to PNG",
                crate::image_io::count_by_extension(&unread).join(", ")
            ),
        };
        DataError::NoImages { path, unread }
    }

    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            error: source,
        }
    }

    /// What a reader read of `category` and the `errors` it found on the way, as one result:
    /// what it read when there are none, the error itself when there is one, else
    /// [`DataError::Several`].
    pub(crate) fn gathered<T>(
        category: &str,
        (read, mut errors): (T, Vec<DataError>),
    ) -> Result<T> {
        match errors.len() {
            0 => Ok(read),
            1 => Err(errors.remove(0)),
            _ => Err(DataError::Several {
                category: category.to_string(),
                errors,
            }),
        }
    }

    /// The errors this one stands for: those of a [`DataError::Several`], else itself.
    pub fn into_errors(self) -> Vec<DataError> {
        match self {
            DataError::Several { errors, .. } => errors,
            other => vec![other],
        }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_names_a_near_candidate_only() {
        let known = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(
            did_you_mean("mnda", &known(&["mnad", "memae"])),
            " (did you mean `mnad`?)"
        );
        assert_eq!(
            did_you_mean("bottel", &known(&["bottle", "cable"])),
            " (did you mean `bottle`?)"
        );
        assert_eq!(did_you_mean("3", &known(&["0", "1"])), "");
        assert_eq!(
            did_you_mean("1", &known(&["01", "02"])),
            " (did you mean `01`?)"
        );
        assert_eq!(did_you_mean("zipper", &known(&["bottle"])), "");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("mnda", "mnad"), 1);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(edit_distance("ab", ""), 2);
    }

    #[test]
    fn a_missing_category_suggests_the_near_one() {
        let err = DataError::CategoryMissing {
            root: PathBuf::from("/data/mvtec"),
            category: "bottel".into(),
            available: vec!["bottle".into(), "cable".into()],
        };
        assert_eq!(
            err.to_string(),
            "category `bottel` not found in /data/mvtec (did you mean `bottle`?); categories \
             there: bottle, cable"
        );
    }

    #[test]
    fn several_errors_print_twenty_and_a_count() {
        let errors: Vec<DataError> = (0..25)
            .map(|i| DataError::no_images(format!("/d/{i}")))
            .collect();
        let err = DataError::gathered("bottle", ((), errors)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("25 problems in category `bottle`"),
            "{text}"
        );
        assert!(
            text.contains("/d/19 holds no images") && !text.contains("/d/20 "),
            "{text}"
        );
        assert!(text.ends_with("... and 5 more"), "{text}");
        assert_eq!(err.into_errors().len(), 25);
        let one = vec![DataError::no_images("/d")];
        assert!(matches!(
            DataError::gathered("c", ((), one)),
            Err(DataError::NoImages { .. })
        ));
        assert!(DataError::gathered("c", ((), Vec::new())).is_ok());
    }
}
