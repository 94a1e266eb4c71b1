//! What an interrupted `memad` says (Ctrl-C, SIGTERM): which unfinished folder was kept and
//! how to continue, or which incomplete folder it removed. Result files are atomic and a
//! run resumes from its last saved epoch, so ending the process at once loses nothing.
use std::path::PathBuf;
use std::sync::Mutex;

/// What an interruption does now: cleans up as it must and returns the message to print.
type OnInterrupt = Box<dyn Fn() -> String + Send>;

static ON_INTERRUPT: Mutex<Option<OnInterrupt>> = Mutex::new(None);

/// Sets what an interruption from now on does: `action` removes what must go and returns
/// the message (which folder was kept or removed, and how to continue).
pub fn on_interrupt(action: impl Fn() -> String + Send + 'static) {
    if let Ok(mut slot) = ON_INTERRUPT.lock() {
        *slot = Some(Box::new(action));
    }
}

/// Runs `create` (making a run folder and its first files) with interruptions held off, then
/// sets `action_of(&made)` as what an interruption does: a signal during `create` waits for
/// it, then runs that action, so that no folder is left without a word. An error of
/// `create` leaves the action as it was.
pub fn after_creating<T, A>(
    create: impl FnOnce() -> anyhow::Result<T>,
    action_of: impl FnOnce(&T) -> A,
) -> anyhow::Result<T>
where
    A: Fn() -> String + Send + 'static,
{
    let mut slot = ON_INTERRUPT.lock().unwrap_or_else(|e| e.into_inner());
    let made = create()?;
    *slot = Some(Box::new(action_of(&made)));
    Ok(made)
}

/// Runs `finish` (a folder's rename to complete) where no interruption can fall between
/// its message and the rename: a signal during it waits, then says the folder finished,
/// as does any signal after.
pub fn finishing(finish: impl FnOnce() -> anyhow::Result<PathBuf>) -> anyhow::Result<PathBuf> {
    let mut slot = ON_INTERRUPT.lock().unwrap_or_else(|e| e.into_inner());
    let folder = finish()?;
    let done = folder.clone();
    *slot = Some(Box::new(move || {
        format!("it had finished: {}", done.display())
    }));
    Ok(folder)
}

/// Installs the handler (on its own thread): it runs the action, prints its message, and
/// ends the process with code 130 without running libtorch's exit-time destructors under
/// threads still computing. Without an action the process just ends.
pub fn install() {
    let _ = ctrlc::set_handler(|| {
        // Held until the process ends, so that `finishing` cannot rename a folder this
        // message calls unfinished.
        let slot = ON_INTERRUPT.lock();
        if let Ok(Some(action)) = slot.as_deref() {
            eprintln!("\ninterrupted: {}", action());
        }
        // SAFETY: ends the process at once, as the default disposition would.
        unsafe { libc::_exit(130) }
    });
}
