//! Secret key files: read, and written once with mode 0600.
//!
//! The format is [`qtrace_ledger::signing`]'s: a header line and the 32-byte
//! Ed25519 seed in hex. A key file is never overwritten: losing a key that
//! signed records would make the person behind it unaccountable.

use std::io::Write;
use std::path::Path;

use qtrace_ledger::signing::{SecretKey, SignatureError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} already exists; refusing to overwrite a key file")]
    Exists { path: String },
    #[error("{path}: {source}")]
    Format { path: String, source: SignatureError },
}

/// Reads a secret key file.
pub fn read_secret_key(path: &Path) -> Result<SecretKey, KeyFileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| KeyFileError::Io { path: path.display().to_string(), source })?;
    SecretKey::from_file_text(&text).map_err(|source| KeyFileError::Format { path: path.display().to_string(), source })
}

/// Writes a new secret key file with mode 0600; refuses to overwrite.
pub fn write_secret_key(path: &Path, key: &SecretKey) -> Result<(), KeyFileError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => KeyFileError::Exists { path: path.display().to_string() },
        _ => KeyFileError::Io { path: path.display().to_string(), source },
    })?;
    file.write_all(key.to_file_text().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| KeyFileError::Io { path: path.display().to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_0600_read_back_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let key = SecretKey::from_seed(&[5; 32]);
        write_secret_key(&path, &key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(read_secret_key(&path).unwrap().seed(), [5; 32]);
        assert!(matches!(write_secret_key(&path, &key), Err(KeyFileError::Exists { .. })));
        std::fs::write(dir.path().join("bad.key"), "nonsense").unwrap();
        assert!(matches!(read_secret_key(&dir.path().join("bad.key")), Err(KeyFileError::Format { .. })));
        assert!(matches!(read_secret_key(&dir.path().join("missing.key")), Err(KeyFileError::Io { .. })));
    }
}
