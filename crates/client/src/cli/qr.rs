//! `qtrace qr`: the QR code of a product's GS1 Digital Link, pointing at a
//! resolver (by default the node's own), drawn in the terminal or written
//! as SVG or PNG.

use std::path::{Path, PathBuf};

use clap::Args;
use qtrace_client::ids::ProductCode;
use qtrace_client::qr::{self, Format};
use qtrace_client::subject;
use serde_json::json;

use super::{Ctx, Failure};

/// The node's consumer resolver on its default address.
pub const DEFAULT_RESOLVER: &str = "http://127.0.0.1:7780";

#[derive(Debug, Clone, Args)]
pub struct QrArgs {
    /// The product: a Digital Link (re-based onto --base), an element string, a GTIN or GTIN/LOT.
    #[arg(value_name = "CODE", value_parser = subject::parse_product)]
    pub code: ProductCode,
    /// The resolver the link points at: where a phone that scans the code goes.
    #[arg(long, env = "QTRACE_RESOLVER", default_value = DEFAULT_RESOLVER, value_name = "URL")]
    pub base: String,
    /// Write the QR code to FILE.svg or FILE.png instead of drawing it in the terminal.
    #[arg(long, value_name = "FILE.png|FILE.svg")]
    pub out: Option<PathBuf>,
}

/// The Digital Link for `code` on `base`, checked to read back as the same
/// product.
fn link(code: &ProductCode, base: &str) -> Result<String, Failure> {
    let scheme_ok = base.starts_with("http://") || base.starts_with("https://");
    if !scheme_ok || base.chars().any(|c| c.is_whitespace() || c == '?' || c == '#') {
        return Err(Failure::Usage(format!(
            "--base {base:?} is not a resolver address such as {DEFAULT_RESOLVER} or https://id.example.cn"
        )));
    }
    let url = code.to_digital_link(base);
    match ProductCode::parse_digital_link(&url) {
        Ok(back) if back == *code => Ok(url),
        Ok(_) => Err(Failure::Usage(format!("--base {base:?}: the link {url} reads back as another product"))),
        Err(e) => Err(Failure::Usage(format!("--base {base:?}: the link {url} does not parse: {e}"))),
    }
}

/// Writes the QR code of `url` to `path` in `format`; returns the bytes written.
fn write(path: &Path, format: Format, code: &qr::QrCode) -> Result<usize, Failure> {
    let bytes = match format {
        Format::Svg => qr::to_svg(code).into_bytes(),
        Format::Png => qr::to_png(code, qr::PNG_SCALE).map_err(|e| Failure::Failed(e.to_string()))?,
    };
    std::fs::write(path, &bytes).map_err(|e| Failure::Failed(format!("cannot write {}: {e}", path.display())))?;
    Ok(bytes.len())
}

pub fn run(ctx: &Ctx, args: QrArgs) -> Result<(), Failure> {
    let format = match &args.out {
        None => None,
        Some(path) => Some(
            Format::of_path(path)
                .ok_or_else(|| Failure::Usage(format!("--out {}: name a .svg or .png file", path.display())))?,
        ),
    };
    let url = link(&args.code, &args.base)?;
    let code = qr::encode(&url).map_err(|e| Failure::Usage(e.to_string()))?;
    let modules = qr::modules(&code);
    match (&args.out, format) {
        (Some(path), Some(format)) => {
            let bytes = write(path, format, &code)?;
            let side = (modules + 2 * qr::QUIET_ZONE) * qr::PNG_SCALE;
            let size = match format {
                Format::Png => format!("{side}×{side} px"),
                Format::Svg => "scalable".to_owned(),
            };
            let value = json!({
                "url": url,
                "format": format.name(),
                "file": path.display().to_string(),
                "bytes": bytes,
                "modules": modules,
            });
            let text = format!(
                "QR code 二维码 written to {} ({}, {modules}×{modules} modules, {size}, {bytes} bytes)\n{url}\n",
                path.display(),
                format.name()
            );
            ctx.emit(value, &text);
        }
        _ => {
            let drawing = qr::to_terminal(&code);
            let value =
                json!({"url": url, "format": "terminal", "file": null, "modules": modules, "terminal": drawing});
            ctx.emit(value, &format!("{drawing}\n{url}\n"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_on_a_base() {
        let code = subject::parse_product("09520123456788/P-1").expect("code");
        let cases = [
            (DEFAULT_RESOLVER, Ok("http://127.0.0.1:7780/01/09520123456788/10/P-1")),
            ("https://id.example.cn/", Ok("https://id.example.cn/01/09520123456788/10/P-1")),
            ("https://id.example.cn/qr", Ok("https://id.example.cn/qr/01/09520123456788/10/P-1")),
            ("ftp://id.example.cn", Err("is not a resolver address")),
            ("id.example.cn", Err("is not a resolver address")),
            ("https://id.example.cn?x=1", Err("is not a resolver address")),
            ("https://id example.cn", Err("is not a resolver address")),
        ];
        for (base, want) in cases {
            match (link(&code, base), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{base}"),
                (Err(failure), Err(want)) => {
                    assert_eq!(failure.exit_code(), 2, "{base}");
                    assert!(failure.message().contains(want), "{base}: {}", failure.message());
                }
                (Ok(got), Err(want)) => panic!("{base}: got {got}, want an error with {want:?}"),
                (Err(failure), Ok(want)) => panic!("{base}: got {}, want {want}", failure.message()),
            }
        }
    }

    #[test]
    fn files_are_written_in_the_format_their_name_asks_for() {
        let dir = tempfile::tempdir().expect("temp dir");
        let code = qr::encode("http://127.0.0.1:7780/01/09520123456788/10/P-1").expect("encodes");
        let modules = qr::modules(&code);
        let svg = dir.path().join("label.svg");
        let png = dir.path().join("label.PNG");
        for path in [&svg, &png] {
            let format = Format::of_path(path).expect("format");
            let written = write(path, format, &code).expect("written");
            assert_eq!(std::fs::metadata(path).expect("file").len() as usize, written, "{}", path.display());
        }
        let svg_text = std::fs::read_to_string(&svg).expect("svg");
        assert!(svg_text.starts_with("<?xml") && svg_text.contains("<svg"), "{svg_text}");
        let png_bytes = std::fs::read(&png).expect("png");
        assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");
        let side = ((modules + 8) * qr::PNG_SCALE) as u32;
        let word =
            |at: usize| u32::from_be_bytes([png_bytes[at], png_bytes[at + 1], png_bytes[at + 2], png_bytes[at + 3]]);
        assert_eq!((word(16), word(20)), (side, side));
        // A directory that does not exist is a failure to write (exit 1).
        let missing = dir.path().join("no/such/dir/label.svg");
        assert!(write(&missing, Format::Svg, &code).is_err_and(|f| f.exit_code() == 1));
    }
}
