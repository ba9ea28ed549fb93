//! QR codes for the GS1 Digital Link printed on a package (`qtrace qr`).
//!
//! The `qrcode` crate encodes the link into a module matrix and renders it
//! as SVG and as Unicode half blocks for a terminal. PNG is drawn here from
//! the same matrix, as 8-bit grayscale with a quiet zone of four modules
//! (ISO/IEC 18004 asks for four), and encoded with the `png` crate; this
//! avoids the `image` crate and everything it brings for one picture.

use qrcode::Color;
pub use qrcode::QrCode;
use qrcode::render::{svg, unicode};

/// Light modules around the symbol on every side.
pub const QUIET_ZONE: usize = 4;
/// Pixels per module in a PNG: 8 px makes a typical Digital Link QR code
/// about 400 px wide, which prints sharply at 2 to 3 cm.
pub const PNG_SCALE: usize = 8;
/// Smallest SVG side, in pixels (the SVG scales without loss anyway).
const SVG_MIN_SIZE: u32 = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QrError {
    #[error("cannot encode {bytes} bytes as a QR code: {detail}")]
    Encode { bytes: usize, detail: String },
    #[error("cannot encode the PNG: {0}")]
    Png(String),
}

/// The picture formats `qtrace qr --out` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    /// The format a file name asks for by its extension (either case).
    pub fn of_path(path: &std::path::Path) -> Option<Format> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "svg" => Some(Format::Svg),
            "png" => Some(Format::Png),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Svg => "svg",
            Format::Png => "png",
        }
    }
}

/// Encodes `text` with error correction level M (15 % of the symbol may be
/// damaged), the usual level for package labels.
pub fn encode(text: &str) -> Result<QrCode, QrError> {
    QrCode::new(text.as_bytes()).map_err(|e| QrError::Encode { bytes: text.len(), detail: e.to_string() })
}

/// Modules per side of the symbol, without the quiet zone.
pub fn modules(code: &QrCode) -> usize {
    code.width()
}

/// The symbol as an SVG document.
pub fn to_svg(code: &QrCode) -> String {
    code.render::<svg::Color<'_>>()
        .quiet_zone(true)
        .min_dimensions(SVG_MIN_SIZE, SVG_MIN_SIZE)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build()
}

/// The symbol as PNG bytes: 8-bit grayscale, `scale` pixels per module, a
/// quiet zone of [`QUIET_ZONE`] modules, so each side is
/// `(modules + 8) * scale` pixels.
pub fn to_png(code: &QrCode, scale: usize) -> Result<Vec<u8>, QrError> {
    let scale = scale.max(1);
    let width = code.width();
    let side = (width + 2 * QUIET_ZONE) * scale;
    let side_u32 = u32::try_from(side).map_err(|_| QrError::Png(format!("{side} pixels is too large")))?;
    let mut pixels = vec![255u8; side * side];
    let colors = code.to_colors();
    for (index, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (x, y) = (index % width, index / width);
        for row in 0..scale {
            let start = ((y + QUIET_ZONE) * scale + row) * side + (x + QUIET_ZONE) * scale;
            pixels[start..start + scale].fill(0);
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side_u32, side_u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| QrError::Png(e.to_string()))?;
    writer.write_image_data(&pixels).map_err(|e| QrError::Png(e.to_string()))?;
    writer.finish().map_err(|e| QrError::Png(e.to_string()))?;
    Ok(out)
}

/// The symbol for a terminal, two modules per character cell (Unicode half
/// blocks), with the quiet zone. Light modules are drawn as blocks and dark
/// ones left blank, because terminals draw light text on a dark background;
/// this is the same choice as `qrencode -t UTF8`.
pub fn to_terminal(code: &QrCode) -> String {
    code.render::<unicode::Dense1x2>()
        .quiet_zone(true)
        .dark_color(unicode::Dense1x2::Light)
        .light_color(unicode::Dense1x2::Dark)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINKS: [&str; 3] = [
        "http://127.0.0.1:7780/01/09520123456788",
        "http://127.0.0.1:7780/01/09520123456788/10/P-1",
        "https://resolver.example.cn/01/09520123456788/10/LOT%2F2026-11/21/SERIAL-0000000001?17=281231",
    ];

    /// Width and height from a PNG's IHDR chunk.
    fn png_size(bytes: &[u8]) -> (u32, u32) {
        let word = |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        assert_eq!(&bytes[12..16], b"IHDR");
        (word(16), word(20))
    }

    #[test]
    fn renderings_have_the_expected_shape() {
        for link in LINKS {
            let code = encode(link).expect("encodes");
            let n = modules(&code);
            assert!(n >= 21 && (n - 21).is_multiple_of(4), "{link}: {n} modules is not a QR version size");

            let png = to_png(&code, PNG_SCALE).expect("png");
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{link}");
            let side = ((n + 8) * PNG_SCALE) as u32;
            assert_eq!(png_size(&png), (side, side), "{link}");
            assert_eq!(png[24], 8, "bit depth");
            assert_eq!(png[25], 0, "grayscale");
            let small = to_png(&code, 1).expect("png");
            assert_eq!(png_size(&small), ((n + 8) as u32, (n + 8) as u32));

            let svg = to_svg(&code);
            assert!(svg.starts_with("<?xml") && svg.contains("<svg") && svg.trim_end().ends_with("</svg>"), "{link}");

            let text = to_terminal(&code);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), (n + 8).div_ceil(2), "{link}");
            assert!(lines.iter().all(|l| l.chars().count() == n + 8), "{link}");
            // The quiet zone is light, drawn as full blocks.
            assert!(lines[0].chars().all(|c| c == '█'), "{link}: {}", lines[0]);
        }
    }

    #[test]
    fn formats_by_extension() {
        let cases = [
            ("label.svg", Some(Format::Svg)),
            ("label.SVG", Some(Format::Svg)),
            ("out/label.png", Some(Format::Png)),
            ("label.jpg", None),
            ("label", None),
        ];
        for (path, want) in cases {
            assert_eq!(Format::of_path(std::path::Path::new(path)), want, "{path}");
        }
    }

    #[test]
    fn too_long_to_encode() {
        let huge = "x".repeat(8_000);
        assert!(matches!(encode(&huge), Err(QrError::Encode { bytes: 8_000, .. })));
    }
}
