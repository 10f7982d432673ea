//! The API's own documentation, served from the binary: `GET /openapi.json` (the OpenAPI 3.1
//! document in `openapi.json`, with `info.version` set to this build's version) and `GET /docs`
//! (a page, its script and its style sheet, all embedded). Like FastAPI's, these need no token.
//!
//! The page loads nothing from outside the broker: its Content-Security-Policy allows only the
//! broker's own origin, and the script is a separate file (no inline script or style).

use crate::api::error::Error;
use crate::http::{Request, Response};
use serde_json::{json, Value};
use std::sync::OnceLock;

const OPENAPI: &str = include_str!("openapi.json");
const PAGE: &str = include_str!("docs/docs.html");
const SCRIPT: &str = include_str!("docs/docs.js");
const STYLE: &str = include_str!("docs/docs.css");

const CSP: &str = "default-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

/// Answers the documentation's own paths (`/openapi.json`, `/docs`, `/docs/...`); `None` for
/// every other path. Only GET: another method is a 405, as everywhere in the router.
pub fn route(req: &Request) -> Option<Result<Response, Error>> {
    let path = req.path();
    let file = match path {
        "/openapi.json" => None,
        "/docs" => Some(("text/html; charset=utf-8", PAGE)),
        "/docs/docs.js" => Some(("text/javascript; charset=utf-8", SCRIPT)),
        "/docs/docs.css" => Some(("text/css; charset=utf-8", STYLE)),
        p if p.starts_with("/docs/") => return Some(Err(Error::RouteNotFound)),
        _ => return None,
    };
    if req.method != "GET" {
        return Some(Err(Error::MethodNotAllowed(&["GET"])));
    }
    Some(match file {
        None => openapi().map(|body| {
            Response {
                status: 200,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: body.to_vec().into(),
            }
            .with_header("Cache-Control", "no-cache")
        }),
        Some((content_type, text)) => Ok(Response {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: text.as_bytes().to_vec().into(),
        }
        .with_header("Content-Security-Policy", CSP)
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("Referrer-Policy", "no-referrer")
        .with_header("Cache-Control", "no-cache")),
    })
}

/// The document as served: parsed once, `info.version` set, compact.
fn openapi() -> Result<&'static [u8], Error> {
    static DOC: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
    DOC.get_or_init(|| serve_form(OPENAPI))
        .as_deref()
        .map_err(|e| Error::Internal(format!("the embedded OpenAPI document: {e}")))
}

fn serve_form(text: &str) -> Result<Vec<u8>, String> {
    let mut doc: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let version = doc
        .pointer_mut("/info/version")
        .ok_or("it has no info.version")?;
    *version = json!(env!("CARGO_PKG_VERSION"));
    serde_json::to_vec(&doc).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_parses_and_carries_the_crate_version() {
        let v: Value = serde_json::from_slice(openapi().unwrap()).unwrap();
        assert_eq!(v["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(v["openapi"].as_str().unwrap().starts_with("3.1"));
        assert!(serve_form("{}").is_err());
        assert!(serve_form("not json").is_err());
    }

    /// Every `$ref` points at something that exists.
    #[test]
    fn every_ref_resolves() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        fn walk(doc: &Value, v: &Value, n: &mut usize) {
            match v {
                Value::Object(m) => {
                    for (k, x) in m {
                        if k == "$ref" {
                            let r = x.as_str().unwrap();
                            let ptr = r.strip_prefix('#').unwrap();
                            assert!(doc.pointer(ptr).is_some(), "dangling $ref {r}");
                            *n += 1;
                        } else {
                            walk(doc, x, n);
                        }
                    }
                }
                Value::Array(a) => a.iter().for_each(|x| walk(doc, x, n)),
                _ => {}
            }
        }
        let mut n = 0;
        walk(&doc, &doc, &mut n);
        assert!(n > 50, "{n} refs");
    }

    /// The page, script and style sheet load nothing from elsewhere: no absolute URL, no inline
    /// script or style, no inline event handler (all of which the CSP would block anyway).
    #[test]
    fn page_assets_are_self_contained() {
        for (name, text) in [("html", PAGE), ("js", SCRIPT), ("css", STYLE)] {
            let lower = text.to_ascii_lowercase();
            for bad in ["http://", "https://", "ws://", "wss://", "//cdn"] {
                assert!(!lower.contains(bad), "{name} contains {bad:?}");
            }
        }
        // The style sheet fetches nothing (fonts, images, other sheets).
        assert!(!STYLE.contains("@import") && !STYLE.contains("url("));
        let page = PAGE.to_ascii_lowercase();
        assert!(!page.contains("<style"), "inline style");
        assert!(!page.contains(" style="), "inline style attribute");
        assert_eq!(page.matches("<script").count(), 1);
        assert!(page.contains(r#"<script src="docs/docs.js" defer></script>"#));
        for h in [
            " onclick",
            " onload",
            " onerror",
            " oninput",
            " onchange",
            " onsubmit",
        ] {
            assert!(!page.contains(h), "inline handler {h}");
        }
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("eval("));
    }
}
