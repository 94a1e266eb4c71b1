//! What an interrupted `memad` says (Ctrl-C, SIGTERM): which unfinished folder was kept and
//! how to continue, or which incomplete folder it removed. Result files are atomic and a
//! run resumes from its last saved epoch, so ending the process at once loses nothing.
use std::path::PathBuf;
use std::sync::Mutex;

/// The message for an interruption now, and a folder to remove (nothing to resume in it).
static ON_INTERRUPT: Mutex<Option<(String, Option<PathBuf>)>> = Mutex::new(None);

/// Sets what an interruption from now on says, and the folder it removes.
pub fn on_interrupt(message: String, remove: Option<PathBuf>) {
    if let Ok(mut slot) = ON_INTERRUPT.lock() {
        *slot = Some((message, remove));
    }
}

/// An interruption from now on says nothing (the work is done).
pub fn clear() {
    if let Ok(mut slot) = ON_INTERRUPT.lock() {
        *slot = None;
    }
}

/// Installs the handler (on its own thread): it prints the message, removes the folder,
/// and ends the process with code 130 without running libtorch's exit-time destructors
/// under threads still computing. Without a message the process just ends.
pub fn install() {
    let _ = ctrlc::set_handler(|| {
        let what = ON_INTERRUPT.lock().ok().and_then(|slot| slot.clone());
        if let Some((message, remove)) = what {
            if let Some(dir) = remove {
                let _ = std::fs::remove_dir_all(dir);
            }
            eprintln!("\ninterrupted: {message}");
        }
        // SAFETY: ends the process at once, as the default disposition would.
        unsafe { libc::_exit(130) }
    });
}
