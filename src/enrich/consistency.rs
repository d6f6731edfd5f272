//! Server-side automation and tamper signals: where the user agent, client hints, platform and WebGL disagree.
//!
//! The browser reports its own automation findings; these are recorded beside them, computed from
//! what the server sees, so a tracker that was tampered with still leaves a trace.

use crate::beacon::Device;
use crate::enrich::agent::{brands, Agent, BrandSummary};
use crate::enrich::trim_quotes;

/// The client-hint request headers.
#[derive(Debug, Default, Clone, Copy)]
pub struct HintHeaders<'a> {
    pub sec_ch_ua: Option<&'a str>,
    pub sec_ch_ua_mobile: Option<&'a str>,
    pub sec_ch_ua_platform: Option<&'a str>,
    pub accept_language: Option<&'a str>,
}

/// Operating-system families, the unit in which UA, hints, platform and GPU are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OsFamily {
    Windows,
    Mac,
    Ios,
    Android,
    Linux,
    ChromeOs,
}

impl OsFamily {
    /// Android reports `Linux armv8l` as its platform; treat the two as compatible.
    fn compatible(self, other: OsFamily) -> bool {
        use OsFamily::*;
        self == other
            || matches!((self, other), (Android, Linux) | (Linux, Android) | (ChromeOs, Linux) | (Linux, ChromeOs))
            // iPadOS reports MacIntel as its platform.
            || matches!((self, other), (Ios, Mac) | (Mac, Ios))
    }
}

/// ASCII case-insensitive substring test, without allocating. `needle` is lowercase.
pub fn has(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    let Some((&first, rest)) = n.split_first() else {
        return true;
    };
    if h.len() < n.len() {
        return false;
    }
    // Compare whole windows only where the first byte matches: most positions fail at once.
    (0..=h.len() - n.len()).any(|i| {
        h[i].to_ascii_lowercase() == first && h[i + 1..i + n.len()].eq_ignore_ascii_case(rest)
    })
}

fn starts(haystack: &str, prefix: &str) -> bool {
    haystack.len() >= prefix.len()
        && haystack.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Family of a free-form OS or platform name (woothee OS, `navigator.platform`, `Sec-CH-UA-Platform`).
///
/// All three name the family first (`Win32`, `Windows 10`, `MacIntel`, `macOS`, `Linux armv8l`,
/// `iPhone`, `Chrome OS`, `CrOS`), so prefix tests are enough and cost a few byte comparisons.
pub fn os_family(name: &str) -> Option<OsFamily> {
    // Byte-wise trims: the `char` ones set up a searcher that costs more than these tests.
    let n = trim_quotes(name).trim_ascii_start();
    Some(if starts(n, "win") {
        OsFamily::Windows
    } else if starts(n, "mac") {
        OsFamily::Mac
    } else if starts(n, "iphone") || starts(n, "ipad") || starts(n, "ipod") || starts(n, "ios") {
        OsFamily::Ios
    } else if starts(n, "android") {
        OsFamily::Android
    } else if starts(n, "cros") || starts(n, "chrome") {
        OsFamily::ChromeOs
    } else if starts(n, "linux") {
        if has(n, "android") {
            OsFamily::Android
        } else {
            OsFamily::Linux
        }
    } else if starts(n, "x11") || starts(n, "ubuntu") || starts(n, "fedora") || starts(n, "debian")
    {
        OsFamily::Linux
    } else {
        return None;
    })
}

/// What a WebGL renderer string names, as far as the checks here care.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct RendererFacts {
    /// A software rasteriser (`SwiftShader`, `llvmpipe`, `Software`): headless or virtualised.
    software: bool,
    /// Direct3D, so Windows.
    direct3d: bool,
    /// An Apple GPU (`Apple M2`, `Apple GPU`), so macOS or iOS.
    apple: bool,
}

/// Words looked for in the WebGL renderer: software rasterisers (0..3), Direct3D (3..5), Apple GPUs (5..7).
/// Searchers are built once; building one costs more than a search. (One pass comparing words
/// where their first letters stand measured slower than these SIMD searches.)
static RENDERER_WORDS: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 7]> =
    std::sync::LazyLock::new(|| {
        [
            "swiftshader",
            "llvmpipe",
            "software",
            "direct3d",
            "d3d11",
            "apple m",
            "apple gpu",
        ]
        .map(memchr::memmem::Finder::new)
    });

/// Reads the renderer case-insensitively: one lowercase copy on the stack (the renderer is cut
/// to 256 bytes at validation), then SIMD substring searches.
fn renderer_facts(renderer: &str) -> RendererFacts {
    let mut lower = [0u8; crate::beacon::limits::WEBGL_TEXT];
    let len = renderer.len().min(lower.len());
    for (l, b) in lower.iter_mut().zip(renderer.as_bytes()) {
        *l = b.to_ascii_lowercase();
    }
    let r = &lower[..len];
    let has = |i: usize| RENDERER_WORDS[i].find(r).is_some();
    RendererFacts {
        software: has(0) || has(1) || has(2),
        direct3d: has(3) || has(4),
        apple: has(5) || has(6),
    }
}

/// Every signal that holds, in a fixed order.
pub fn server_flags(
    agent: &Agent,
    headers: HintHeaders<'_>,
    device: Option<&Device<'_>>,
) -> Vec<&'static str> {
    let mut flags: Vec<&'static str> = Vec::new();
    if agent.headless {
        flags.push("headless_ua");
    }
    if agent.non_browser {
        flags.push("non_browser_ua");
    }
    let ua_family = agent.os_family;

    // Client hints: from the request headers, else what the tracker read from userAgentData.
    let brands = BrandSummary::of(brands(
        headers.sec_ch_ua,
        device.and_then(|d| d.uach.as_ref()),
    ));
    if brands.headless {
        flags.push("headless_client_hints");
    }
    if let Some(brand) = brands.main {
        let ua_major = before(&agent.browser_version, |c| c == b'.');
        if !brand.major.is_empty() && !ua_major.is_empty() && brand.major != ua_major {
            flags.push("ua_client_hints_version_mismatch");
        }
        if agent.non_browser {
            flags.push("client_hints_from_non_browser");
        }
    }
    let hint_platform = headers.sec_ch_ua_platform.or_else(|| {
        device
            .and_then(|d| d.uach.as_ref())
            .map(|ch| ch.platform.as_ref())
    });
    if let (Some(ua), Some(hint)) = (ua_family, hint_platform.and_then(os_family)) {
        if !ua.compatible(hint) {
            flags.push("ua_client_hints_platform_mismatch");
        }
    }
    let hint_mobile = match headers.sec_ch_ua_mobile.map(str::trim) {
        Some("?1") => Some(true),
        Some("?0") => Some(false),
        _ => device.and_then(|d| d.uach.as_ref()).map(|ch| ch.mobile),
    };
    if let Some(mobile) = hint_mobile {
        let ua_mobile = matches!(agent.device.as_str(), "mobile" | "tablet");
        if agent.device != "unknown" && agent.device != "bot" && mobile != ua_mobile {
            flags.push("ua_client_hints_mobile_mismatch");
        }
    }

    if let Some(d) = device {
        if let (Some(ua), Some(platform)) = (ua_family, os_family(&d.platform)) {
            if !ua.compatible(platform) {
                flags.push("ua_platform_mismatch");
            }
        }
        if let Some(gl) = &d.webgl {
            let gpu = renderer_facts(&gl.renderer);
            if gpu.software {
                flags.push("software_webgl");
            }
            let gpu_family = if gpu.direct3d {
                Some(OsFamily::Windows)
            } else if gpu.apple {
                Some(OsFamily::Mac)
            } else {
                None
            };
            if let (Some(ua), Some(gpu)) = (ua_family, gpu_family) {
                if !ua.compatible(gpu) {
                    flags.push("webgl_os_mismatch");
                }
            }
        }
        if d.langs.is_empty() {
            flags.push("no_languages");
        } else if let Some(accept) = headers.accept_language {
            let header_primary = primary_language(before(accept, |c| c == b','));
            let js_primary = primary_language(&d.langs[0]);
            if !header_primary.is_empty() && !header_primary.eq_ignore_ascii_case(js_primary) {
                flags.push("language_mismatch");
            }
        }
    }
    flags
}

/// `kk-KZ;q=0.9` -> `kk`.
fn primary_language(tag: &str) -> &str {
    before(tag.trim_ascii_start(), |c| matches!(c, b';' | b'-' | b'_')).trim_ascii_end()
}

/// `s` up to the first byte that `stop` matches (all of `s` if none does). Byte-wise, because
/// `str::split` with a `char` pattern sets up a searcher for what is a few bytes' scan here.
fn before(s: &str, stop: impl Fn(u8) -> bool) -> &str {
    let end = s.bytes().position(stop).unwrap_or(s.len());
    // `stop` only matches ASCII here, so `end` is on a character boundary.
    s.get(..end).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::beacon::{ClientHints, WebGl};
    use crate::enrich::agent::AgentParser;

    const CHROME_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
    const HEADLESS: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36";

    fn flags(ua: &str, headers: HintHeaders<'_>, device: Option<&Device<'_>>) -> Vec<&'static str> {
        let agent = AgentParser::new(4).parse(ua);
        server_flags(&agent, headers, device)
    }

    #[test]
    fn a_consistent_browser_has_no_flags() {
        let d = Device {
            platform: "Win32".into(),
            langs: vec!["en-US".into()],
            webgl: Some(WebGl {
                renderer: "ANGLE (NVIDIA, Direct3D11)".into(),
                ..WebGl::default()
            }),
            ..Device::default()
        };
        let h = HintHeaders {
            sec_ch_ua: Some(r#""Chromium";v="156", "Google Chrome";v="156", "Not?A_Brand";v="24""#),
            sec_ch_ua_mobile: Some("?0"),
            sec_ch_ua_platform: Some("\"Windows\""),
            accept_language: Some("en-US,en;q=0.9"),
        };
        assert!(flags(CHROME_WIN, h, Some(&d)).is_empty());
    }

    #[test]
    fn headless_chrome_is_flagged_by_ua_and_software_gl() {
        let d = Device {
            platform: "Linux x86_64".into(),
            langs: vec!["en-US".into()],
            webgl: Some(WebGl {
                renderer: "ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device (Subzero)))".into(),
                ..WebGl::default()
            }),
            ..Device::default()
        };
        let f = flags(HEADLESS, HintHeaders::default(), Some(&d));
        assert_eq!(f, vec!["headless_ua", "software_webgl"]);
    }

    #[test]
    fn spoofed_user_agent_disagrees_with_everything_else() {
        // A Linux machine claiming to be Windows Chrome 156 through its UA string only.
        let d = Device {
            platform: "Linux x86_64".into(),
            langs: vec!["de-DE".into()],
            uach: Some(ClientHints {
                brands: vec!["Chromium/120".into()],
                platform: "Linux".into(),
                mobile: true,
                ..ClientHints::default()
            }),
            webgl: Some(WebGl {
                renderer: "Apple M2".into(),
                ..WebGl::default()
            }),
            ..Device::default()
        };
        let h = HintHeaders {
            accept_language: Some("en-US"),
            ..HintHeaders::default()
        };
        let f = flags(CHROME_WIN, h, Some(&d));
        assert_eq!(
            f,
            vec![
                "ua_client_hints_version_mismatch",
                "ua_client_hints_platform_mismatch",
                "ua_client_hints_mobile_mismatch",
                "ua_platform_mismatch",
                "webgl_os_mismatch",
                "language_mismatch"
            ]
        );
    }

    #[test]
    fn scripts_are_flagged() {
        let f = flags(
            "python-requests/2.31",
            HintHeaders::default(),
            Some(&Device::default()),
        );
        assert_eq!(f, vec!["non_browser_ua", "no_languages"]);
    }

    #[test]
    fn renderer_words_are_found_in_any_case_and_anywhere() {
        let facts = |r: &str| renderer_facts(r);
        let none = RendererFacts::default();
        let software = RendererFacts {
            software: true,
            ..none
        };
        let direct3d = RendererFacts {
            direct3d: true,
            ..none
        };
        let apple = RendererFacts {
            apple: true,
            ..none
        };
        for (renderer, expected) in [
            (
                "ANGLE (Google, Vulkan 1.3.0 (SwiftShader Device (Subzero)), SwiftShader driver)",
                software,
            ),
            ("llvmpipe (LLVM 15.0.6, 256 bits)", software),
            ("Mesa OffScreen SOFTWARE", software),
            (
                "ANGLE (NVIDIA, NVIDIA GeForce RTX 3060 Direct3D11 vs_5_0 ps_5_0, D3D11)",
                direct3d,
            ),
            (
                "ANGLE (Intel, Intel(R) UHD Graphics 620 (0x00005917) d3d11)",
                direct3d,
            ),
            ("Apple M2", apple),
            ("Apple GPU", apple),
            (
                "ANGLE (Apple, ANGLE Metal Renderer: Apple M1 Pro, Unspecified Version)",
                apple,
            ),
            ("ANGLE (Apple, Apple GPU, OpenGL 4.1)", apple),
            ("Mali-G78", none),
            ("Adreno (TM) 740", none),
            ("Apple A15", none),
            ("direct3", none),
            ("", none),
            ("swiftshade", none),
            ("ÄÖÜ software", software),
        ] {
            assert_eq!(facts(renderer), expected, "{renderer:?}");
        }
        assert_eq!(
            facts("SwiftShader on Direct3D11"),
            RendererFacts {
                software: true,
                direct3d: true,
                apple: false
            }
        );
    }

    #[test]
    fn case_insensitive_search() {
        assert!(has(
            "ANGLE (Google, Vulkan (SwiftShader Device))",
            "swiftshader"
        ));
        assert!(has("abc", ""));
        assert!(!has("ab", "abc"));
        assert!(has("xxAbC", "abc"));
        assert!(!has("xxAbD", "abc"));
    }

    #[test]
    fn the_primary_language_is_the_tag_before_region_and_weight() {
        for (tag, primary) in [
            ("kk-KZ;q=0.9", "kk"),
            ("kk-KZ", "kk"),
            (" en_US", "en"),
            ("ru", "ru"),
            ("de ;q=0.5", "de"),
            ("*", "*"),
            ("", ""),
            ("-KZ", ""),
        ] {
            assert_eq!(primary_language(tag), primary, "{tag:?}");
        }
        assert_eq!(before("kk-KZ,kk;q=0.9", |c| c == b','), "kk-KZ");
        assert_eq!(before("156.0.0.0", |c| c == b'.'), "156");
        assert_eq!(before("156", |c| c == b'.'), "156");
    }

    #[test]
    fn android_platform_is_linux() {
        assert!(OsFamily::Android.compatible(os_family("Linux armv8l").unwrap()));
        assert_eq!(os_family("MacIntel"), Some(OsFamily::Mac));
        assert_eq!(os_family("\"macOS\""), Some(OsFamily::Mac));
        assert_eq!(os_family("iPhone"), Some(OsFamily::Ios));
        assert_eq!(os_family("Win32"), Some(OsFamily::Windows));
        assert_eq!(os_family("Windows 10"), Some(OsFamily::Windows));
        assert_eq!(os_family("Mac OSX"), Some(OsFamily::Mac));
        assert_eq!(os_family("Chrome OS"), Some(OsFamily::ChromeOs));
        assert_eq!(os_family("Linux; Android 14"), Some(OsFamily::Android));
        assert_eq!(os_family("Linux x86_64"), Some(OsFamily::Linux));
        assert_eq!(os_family("iPad"), Some(OsFamily::Ios));
        assert_eq!(os_family(""), None);
    }
}
