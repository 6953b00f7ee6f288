//! [`PidFile`]: the file that names the process serving, following the
//! generation that serves through an upgrade.

use std::io;
use std::path::{Path, PathBuf};

/// A pid file this process wrote. Written whole (a temporary file renamed
/// over it), so a reader never sees half a pid; removed on drop only while
/// it still names this process, so the old generation of an upgrade
/// leaves the new one's file in place.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Writes this process's pid to `path`.
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub fn write(path: impl Into<PathBuf>) -> io::Result<PidFile> {
        let path = path.into();
        let pid = std::process::id();
        let dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut temp = tempfile::NamedTempFile::new_in(dir)?;
        io::Write::write_all(&mut temp, format!("{pid}\n").as_bytes())?;
        temp.persist(&path).map_err(|error| error.error)?;
        Ok(PidFile { path, pid })
    }

    /// Where the file is.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // A forked child (a pre-fork worker) holds a copy: not its file.
        if std::process::id() != self.pid {
            return;
        }
        let ours = std::fs::read_to_string(&self.path)
            .is_ok_and(|text| text.trim().parse() == Ok(self.pid));
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
