//! `report.html`: the same content as `summary.md`, in one self-contained file: the plots
//! are embedded as base64 data URIs and the style is inline, so it can be mailed or
//! archived as a single artifact.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::json::Summary;
use super::md::{Block, document};
use super::plots::Plot;

const STYLE: &str = "body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1040px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}\
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}\
th{background:#f4f4f4}code{background:#f4f4f4;padding:0 .25em;border-radius:3px}\
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{color:#555;font-size:.9em}\
.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}";

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Escapes, then renders the few inline marks the report uses: `code` and **bold**.
fn inline(s: &str) -> String {
    let e = escape(s);
    let mut out = String::new();
    for (i, part) in e.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{part}</code>"));
        } else {
            for (j, p) in part.split("**").enumerate() {
                if j % 2 == 1 {
                    out.push_str(&format!("<strong>{p}</strong>"));
                } else {
                    out.push_str(p);
                }
            }
        }
    }
    out
}

fn cell(s: &str) -> String {
    match s {
        "pass" => "<span class=\"pass\">pass</span>".into(),
        "FAIL" => "<span class=\"fail\">FAIL</span>".into(),
        other => inline(other),
    }
}

/// The HTML page; plots are read from `plots_dir` and embedded.
pub fn render(s: &Summary, plots: &[Plot], plots_dir: &Path) -> std::io::Result<String> {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str(&format!(
        "<title>chat-sim: {}</title><style>{STYLE}</style></head><body>\n",
        escape(&s.scenario)
    ));
    for b in document(s, plots) {
        match b {
            Block::Title(t) => {
                let class = if s.passed { "pass" } else { "fail" };
                out.push_str(&format!("<h1 class=\"{class}\">{}</h1>\n", inline(&t)));
            }
            Block::Heading(h) => out.push_str(&format!("<h2>{}</h2>\n", inline(&h))),
            Block::Para(p) => out.push_str(&format!("<p>{}</p>\n", inline(&p))),
            Block::List(items) => {
                out.push_str("<ul>");
                for i in items {
                    out.push_str(&format!("<li>{}</li>", inline(&i)));
                }
                out.push_str("</ul>\n");
            }
            Block::Table { head, rows } => {
                out.push_str("<table><thead><tr>");
                for h in head {
                    out.push_str(&format!("<th>{}</th>", inline(&h)));
                }
                out.push_str("</tr></thead><tbody>");
                for r in rows {
                    out.push_str("<tr>");
                    for c in r {
                        out.push_str(&format!("<td>{}</td>", cell(&c)));
                    }
                    out.push_str("</tr>");
                }
                out.push_str("</tbody></table>\n");
            }
            Block::Image {
                file,
                title,
                caption,
            } => {
                let bytes = std::fs::read(plots_dir.join(&file))?;
                out.push_str(&format!(
                    "<figure><img alt=\"{}\" src=\"data:image/png;base64,{}\"><figcaption>{}</figcaption></figure>\n",
                    escape(&title),
                    B64.encode(bytes),
                    inline(&caption)
                ));
            }
        }
    }
    out.push_str("</body></html>\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_marks_and_escaping() {
        assert_eq!(
            inline("a <b> `c&d` **e**"),
            "a &lt;b&gt; <code>c&amp;d</code> <strong>e</strong>"
        );
    }
}
