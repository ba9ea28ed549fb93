//! Secret key files on disk: created with mode 0600 and never overwritten.
//!
//! The file format is [`SecretKey::to_file_text`] (two lines: a header and
//! the hex seed). Writing uses `create_new`, so an existing file — perhaps
//! the only copy of a key registered in a ledger — is never replaced, and
//! the mode is set when the file is created, so the secret is never readable
//! by others, not even for a moment.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use qtrace_ledger::signing::{SecretKey, SignatureError};

/// Mode of a new key file: read and write for the owner only.
pub const KEY_FILE_MODE: u32 = 0o600;

/// A key file is two short lines; anything much longer is not a key file,
/// and reading stops there rather than loading a large file into memory.
const MAX_KEY_FILE_BYTES: u64 = 4096;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    #[error("{}: already exists; refusing to overwrite a key file (choose another path)", .0.display())]
    Exists(PathBuf),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: not a qtrace secret key file: {source}", path.display())]
    Format { path: PathBuf, source: SignatureError },
    #[error("{}: not a qtrace secret key file: it is larger than {MAX_KEY_FILE_BYTES} bytes", .0.display())]
    TooLarge(PathBuf),
    #[error("could not generate a key: {0}")]
    Generate(SignatureError),
}

/// Writes `key` to a new file at `path` with mode 0600, refusing to replace
/// an existing file. A partly written file is removed.
pub fn write_secret_key(path: &Path, key: &SecretKey) -> Result<(), KeyFileError> {
    let io_err = |source| KeyFileError::Io { path: path.to_owned(), source };
    let mut file = OpenOptions::new().write(true).create_new(true).mode(KEY_FILE_MODE).open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists { KeyFileError::Exists(path.to_owned()) } else { io_err(e) }
    })?;
    let written = file.write_all(key.to_file_text().as_bytes()).and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        // The half-written file holds no usable key; removing it lets the
        // user retry with the same path. A failure to remove is reported by
        // the original error.
        let _ = std::fs::remove_file(path);
        return Err(io_err(e));
    }
    Ok(())
}

/// Generates a fresh key and writes it to a new file at `path`.
pub fn generate(path: &Path) -> Result<SecretKey, KeyFileError> {
    let key = SecretKey::generate().map_err(KeyFileError::Generate)?;
    write_secret_key(path, &key)?;
    Ok(key)
}

/// Reads a secret key file.
pub fn read_secret_key(path: &Path) -> Result<SecretKey, KeyFileError> {
    let io_err = |source| KeyFileError::Io { path: path.to_owned(), source };
    let file = File::open(path).map_err(io_err)?;
    let mut text = String::new();
    file.take(MAX_KEY_FILE_BYTES + 1).read_to_string(&mut text).map_err(io_err)?;
    if text.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(KeyFileError::TooLarge(path.to_owned()));
    }
    SecretKey::from_file_text(&text).map_err(|source| KeyFileError::Format { path: path.to_owned(), source })
}

/// Whether others than the owner may read the file (a warning sign for a
/// secret key), or `None` if its mode cannot be read.
pub fn readable_by_others(path: &Path) -> Option<bool> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    Some(mode & 0o077 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_mode_0600_and_reads_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("signer.key");
        let key = generate(&path).expect("new key file");
        let mode = std::fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, KEY_FILE_MODE);
        assert_eq!(readable_by_others(&path), Some(false));
        let back = read_secret_key(&path).expect("reads back");
        assert_eq!(back.seed(), key.seed());
    }

    #[test]
    fn refuses_to_overwrite() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("signer.key");
        let first = generate(&path).expect("new key file");
        let second = SecretKey::from_seed(&[2; 32]);
        assert!(matches!(write_secret_key(&path, &second), Err(KeyFileError::Exists(_))));
        assert_eq!(read_secret_key(&path).expect("still there").seed(), first.seed(), "the first key is untouched");
    }

    #[test]
    fn bad_files_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", vec![], "not a qtrace secret key file"),
            ("public key", b"3f3f\n".to_vec(), "not a qtrace secret key file"),
            ("huge", vec![b'a'; 10_000], "larger than 4096 bytes"),
            ("binary", vec![0xff, 0xfe], "stream did not contain valid UTF-8"),
        ];
        for (name, bytes, want) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).expect("write test file");
            let got = read_secret_key(&path).map(drop).map_err(|e| e.to_string());
            assert!(got.as_ref().is_err_and(|e| e.contains(want)), "{name}: {got:?}");
        }
        let missing = read_secret_key(&dir.path().join("missing")).map(drop).map_err(|e| e.to_string());
        assert!(missing.is_err_and(|e| e.contains("No such file")));
    }
}
