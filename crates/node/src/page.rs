//! The consumer pages of the resolver, rendered from a verdict report.
//!
//! Pages are plain HTML with inline CSS and system fonts: no script, no
//! external asset, readable on a phone, Chinese and English side by side.
//! Every string that came from a record (names, reasons, lot numbers) goes
//! through [`escape`]; the HTTP layer also sends a Content-Security-Policy
//! that forbids scripts, so a record cannot run code in a consumer's
//! browser even if a string were missed.
//!
//! Rendering does no I/O: the functions here take a report and return text.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use qtrace_ledger::event::EventKind;
use qtrace_ledger::ids::IdError;
use qtrace_ledger::verdict::{Check, Overall, Report, Severity};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

const STYLE: &str = r#"
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;background:#eef1f5;color:#1f2937;line-height:1.5;font-size:16px;
font-family:system-ui,-apple-system,"Segoe UI",Roboto,"PingFang SC","Hiragino Sans GB","Microsoft YaHei","Noto Sans CJK SC","Noto Sans SC","WenQuanYi Micro Hei",sans-serif}
main{max-width:42rem;margin:0 auto;padding-bottom:1.5rem}
.top{display:flex;justify-content:space-between;align-items:center;padding:.6rem 1rem;font-size:.85rem;color:#4b5563}
.top b{color:#111827}.top a{color:#1d4ed8;text-decoration:none}
.banner{color:#fff;text-align:center;padding:1.4rem 1rem 1.2rem;margin:0 .75rem;border-radius:1rem}
.banner.valid{background:#15803d}.banner.warning{background:#b45309}.banner.invalid{background:#b91c1c}.banner.notfound{background:#4b5563}
.banner .icon{font-size:2.6rem;line-height:1;font-weight:700}
.banner .word{margin:.3rem 0 0;font-size:2.4rem;font-weight:800;letter-spacing:.12em;line-height:1.2}
.banner .word span{display:block;font-size:1.1rem;letter-spacing:.2em;font-weight:700;opacity:.95}
.banner .reason{margin:.5rem auto 0;font-size:1.05rem;font-weight:700;background:rgba(0,0,0,.18);border-radius:.5rem;padding:.25rem .7rem;display:table}
.banner .advice{margin:.6rem 0 0;font-size:1rem}
.banner .advice span{display:block;font-size:.9rem;opacity:.9}
.subject{margin:.7rem 0 0;font-size:.85rem;opacity:.9;word-break:break-all}
.pills{display:flex;flex-wrap:wrap;justify-content:center;gap:.4rem;margin-top:.8rem}
.pill{background:rgba(255,255,255,.2);border-radius:999px;padding:.2rem .7rem;font-size:.85rem;white-space:nowrap}
.card{background:#fff;margin:.75rem;border-radius:.9rem;padding:.9rem 1rem;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.card h2{margin:0;font-size:1.1rem;display:flex;flex-wrap:wrap;align-items:center;gap:.1rem .5rem;white-space:nowrap}
.card h2 small{font-weight:500;color:#6b7280;font-size:.85rem;white-space:normal}
.mark{flex:none;width:1.5rem;height:1.5rem;border-radius:50%;color:#fff;font-size:.9rem;display:flex;align-items:center;justify-content:center;font-weight:700}
.mark.ok{background:#16a34a}.mark.warning{background:#d97706}.mark.invalid{background:#dc2626}.mark.info{background:#64748b}
.lead{margin:.45rem 0 0;font-weight:600}
.lead span{display:block;font-weight:400;color:#4b5563;font-size:.92rem}
.lead.warning{color:#92400e}.lead.invalid{color:#b91c1c}
.detail{margin:.4rem 0 0;font-size:.82rem;color:#6b7280;overflow-wrap:anywhere}
.ev{margin:.45rem 0 0;font-size:.82rem;color:#6b7280;display:flex;flex-wrap:wrap;gap:.3rem;align-items:center}
.ev a,.chip{display:inline-block;padding:.05rem .5rem;border:1px solid #cbd5e1;border-radius:.4rem;color:#1d4ed8;text-decoration:none;background:#f8fafc}
details summary{cursor:pointer;color:#1d4ed8;font-size:.85rem;margin-top:.4rem}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:.15rem .75rem;margin:.5rem 0 0;font-size:.9rem}
dl.kv dt{color:#6b7280}dl.kv dd{margin:0;overflow-wrap:anywhere}
ul.orgs{list-style:none;margin:.5rem 0 0;padding:0}
ul.orgs li{padding:.55rem 0;border-top:1px solid #eef1f5}
ul.orgs li:first-child{border-top:0}
.org{font-weight:600}.uscc{font-size:.8rem;color:#6b7280;font-family:ui-monospace,monospace}
.who{font-size:.9rem}.roles{font-size:.82rem;color:#4b5563}
ol.path{list-style:none;margin:.6rem 0 0;padding:0 0 0 1.1rem;border-left:3px solid #cbd5e1}
ol.path li{position:relative;padding:0 0 .8rem .4rem}
ol.path li::before{content:"";position:absolute;left:-1.72rem;top:.35rem;width:.8rem;height:.8rem;border-radius:50%;background:#1d4ed8;border:2px solid #fff}
ol.path .when{font-size:.8rem;color:#6b7280}
ol.path .kind{display:inline-block;font-size:.78rem;background:#e0e7ff;color:#3730a3;border-radius:.3rem;padding:0 .35rem;margin-right:.3rem}
ol.path .what{font-size:.9rem;overflow-wrap:anywhere}
ol.path .by{font-size:.82rem;color:#4b5563}
.foot{margin:1rem;font-size:.8rem;color:#6b7280;text-align:center;overflow-wrap:anywhere}
.foot a{color:#1d4ed8}
code{font-family:ui-monospace,monospace;font-size:.85em;background:#f1f5f9;padding:0 .2rem;border-radius:.2rem;overflow-wrap:anywhere}
"#;

fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n\
         <body>\n<main>\n<div class=\"top\"><span><b>qtrace</b> 产品追溯 · Product check</span><a href=\"/\">关于 About</a></div>\n{body}</main>\n</body>\n</html>\n",
        escape(title)
    )
}

/// A record kind in English words ("certificate issued").
fn kind_en(kind: EventKind) -> String {
    kind.name().replace('_', " ")
}

fn class_of(severity: Severity) -> &'static str {
    match severity {
        Severity::Ok => "ok",
        Severity::Warning => "warning",
        Severity::Invalid => "invalid",
    }
}

fn mark_of(severity: Severity) -> &'static str {
    match severity {
        Severity::Ok => "✓",
        Severity::Warning => "!",
        Severity::Invalid => "✗",
    }
}

/// A record citation `<log id>/<seq>/<entry hash>` (possibly followed by
/// words, as accountability evidence is) as the evidence route's path, if
/// it is one.
fn evidence_href(evidence: &str) -> Option<(String, u64)> {
    let cite = evidence.split(' ').next()?;
    let mut parts = cite.split('/');
    let (log, seq, hash) = (parts.next()?, parts.next()?, parts.next()?);
    let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if parts.next().is_some() || !hex64(log) || !hex64(hash) {
        return None;
    }
    let seq: u64 = seq.parse().ok()?;
    Some((format!("/evidence/{log}/{seq}"), seq))
}

/// Links to the evidence behind a check: each record it cites, as a chip
/// opening `/evidence/<log>/<seq>`. Long lists fold away.
fn evidence_links(cites: &[String]) -> String {
    // One chip per record, in log order.
    let mut records: BTreeMap<(u64, String), &str> = BTreeMap::new();
    for cite in cites {
        if let Some((href, seq)) = evidence_href(cite) {
            records.entry((seq, href)).or_insert(cite.split(' ').next().unwrap_or(cite));
        }
    }
    let links: Vec<String> = records
        .iter()
        .map(|((seq, href), cite)| format!("<a href=\"{}\" title=\"{}\">#{seq}</a>", escape(href), escape(cite)))
        .collect();
    if links.is_empty() {
        return String::new();
    }
    let label = format!("证据 Evidence ({})", links.len());
    if links.len() <= 8 {
        format!("<div class=\"ev\">{label}: {}</div>\n", links.join(" "))
    } else {
        format!("<details><summary>{label}</summary><div class=\"ev\">{}</div></details>\n", links.join(" "))
    }
}

/// Replaces organisation codes in a text with "name (code)".
fn with_names(text: &str, names: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for (uscc, name) in names {
        if out.contains(uscc.as_str()) && !out.contains(name.as_str()) {
            out = out.replace(uscc.as_str(), &format!("{name} ({uscc})"));
        }
    }
    out
}

/// One card: a title in both languages, a bilingual lead line for its
/// status, the checks' own details and their evidence.
struct Card<'a> {
    /// The section's fragment id, so a link can point at it.
    id: &'static str,
    zh: &'static str,
    en: &'static str,
    checks: Vec<&'a Check>,
    /// (Chinese, English) lead per severity: ok, warning, invalid.
    leads: [(&'static str, &'static str); 3],
}

impl Card<'_> {
    fn severity(&self) -> Severity {
        self.checks.iter().map(|c| c.severity).max().unwrap_or(Severity::Ok)
    }

    fn render(&self, extra: &str) -> String {
        if self.checks.is_empty() {
            return String::new();
        }
        let severity = self.severity();
        let (zh, en) = match severity {
            Severity::Ok => self.leads[0],
            Severity::Warning => self.leads[1],
            Severity::Invalid => self.leads[2],
        };
        let mut html = format!(
            "<section class=\"card\" id=\"{}\">\n<h2><span class=\"mark {}\">{}</span>{} <small>{}</small></h2>\n\
             <p class=\"lead {}\">{zh}<span>{en}</span></p>\n",
            self.id,
            class_of(severity),
            mark_of(severity),
            self.zh,
            self.en,
            class_of(severity),
        );
        for check in &self.checks {
            let _ = writeln!(html, "<p class=\"detail\">{}</p>", escape(&check.detail));
        }
        html.push_str(extra);
        let cites: Vec<String> = self.checks.iter().flat_map(|c| c.evidence.iter().cloned()).collect();
        html.push_str(&evidence_links(&cites));
        html.push_str("</section>\n");
        html
    }
}

/// Everything a verdict page needs besides the report.
pub struct PageContext<'a> {
    /// The path the consumer asked for (shown, and used for the JSON link).
    pub path_and_query: &'a str,
    /// The node's log origin, shown in the footer.
    pub origin: &'a str,
}

fn banner(verdict: Overall) -> (&'static str, &'static str, &'static str, &'static str) {
    match verdict {
        Overall::Valid => ("valid", "✓", "所有检查均通过：正品，未召回", "All checks passed: genuine and not recalled"),
        Overall::Warning => ("warning", "!", "请注意下方提示", "Some checks need your attention (see below)"),
        Overall::Invalid => (
            "invalid",
            "✗",
            "请勿食用或使用，并联系销售者或拨打 12315",
            "Do not use this product; contact the seller or call 12315",
        ),
        Overall::NotFound => (
            "notfound",
            "?",
            "账本中没有此产品的记录，可能是假冒产品",
            "The ledger has no record of this product: it may be counterfeit",
        ),
    }
}

/// Why a check is not OK, in words a consumer reads on the banner
/// (Chinese, English).
fn reason_of(check: &Check) -> (&'static str, &'static str) {
    let invalid = check.severity == Severity::Invalid;
    match check.name {
        "integrity" => ("记录被篡改或无法验证", "Records altered or not verifiable"),
        "accountability" => ("签名人未获授权", "Signed without authority"),
        "equivocation" if invalid => ("账本出现两种历史", "The ledger showed two histories"),
        "equivocation" => ("账本分叉警报", "Ledger fork alarm"),
        "source" => ("来源不明", "Source not on record"),
        "destination" => ("去向不明", "Destination not on record"),
        "certificate" if invalid => ("认证无效或被冒用", "Certificate invalid or misused"),
        "certificate" => ("认证异常", "Certificate issue"),
        "recall" if invalid => ("已召回", "Recalled"),
        "recall" => ("召回信息需注意", "Recall notice"),
        "spot_check" if invalid => ("抽查或检验不合格", "Failed a spot check or inspection"),
        "spot_check" => ("抽查或检验需注意", "Spot check or inspection needs attention"),
        "blacklist" => ("责任主体列入黑名单", "A responsible organisation is blacklisted"),
        "witnesses" => ("见证不足", "Not enough witnesses"),
        "basis" => ("认证依据存疑", "The certificate's basis is in doubt"),
        "scope" => ("超出认证范围", "Outside the certificate's scope"),
        "correction" => ("记录已被更正", "A record was corrected"),
        "found" => ("查无此产品", "Not on record"),
        _ => ("其他检查未通过", "Another check failed"),
    }
}

/// The reasons a verdict is not VALID, most severe first, each once.
fn reasons(report: &Report) -> Vec<(&'static str, &'static str)> {
    let mut problems: Vec<&Check> = report.checks.iter().filter(|c| c.severity != Severity::Ok).collect();
    // Stable: checks of one severity keep the report's order.
    problems.sort_by_key(|c| std::cmp::Reverse(c.severity));
    let mut out = Vec::new();
    for reason in problems.into_iter().map(reason_of) {
        if !out.contains(&reason) {
            out.push(reason);
        }
    }
    out
}

/// The consumer's page for a product verdict.
pub fn verdict_page(report: &Report, context: &PageContext<'_>) -> String {
    let (class, icon, advice_zh, advice_en) = banner(report.verdict);
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for r in &report.responsible {
        if !r.uscc.is_empty() && !r.organisation.is_empty() {
            names.insert(r.uscc.clone(), r.organisation.clone());
        }
    }
    let check = |name: &'static str| report.checks.iter().filter(move |c| c.name == name);

    let mut pills = Vec::new();
    let genuine: Vec<&Check> = check("integrity").chain(check("accountability")).chain(check("equivocation")).collect();
    if report.verdict != Overall::NotFound && !genuine.is_empty() {
        let ok = genuine.iter().all(|c| c.severity == Severity::Ok);
        pills.push(if ok { "✓ 正品 Genuine" } else { "✗ 真伪存疑 Not genuine" });
    }
    if let Some(c) = check("certificate").next() {
        pills.push(match c.severity {
            Severity::Ok if report.certificates.is_empty() => "– 无认证记录 No certificate",
            Severity::Ok => "✓ 已认证 Certified",
            Severity::Warning => "! 认证异常 Certificate issue",
            Severity::Invalid => "✗ 认证无效 Certificate invalid",
        });
    }
    if check("recall").next().is_some() {
        pills.push(if report.recalled { "✗ 已召回 Recalled" } else { "✓ 未召回 Not recalled" });
    }
    if check("blacklist").any(|c| c.severity != Severity::Ok) {
        pills.push("! 黑名单 Blacklisted");
    }

    let mut body = String::new();
    let _ = write!(
        body,
        "<section class=\"banner {class}\">\n<div class=\"icon\">{icon}</div>\n\
         <p class=\"word\">{}<span>{}</span></p>\n",
        report.verdict.name_zh(),
        report.verdict.name().replace('_', " "),
    );
    // What is wrong, on the banner itself: a consumer should not have to
    // find the one section that warns.
    if matches!(report.verdict, Overall::Warning | Overall::Invalid) {
        for (zh, en) in reasons(report) {
            let _ = writeln!(body, "<p class=\"reason\">{zh} {en}</p>");
        }
    }
    let _ = writeln!(body, "<p class=\"advice\">{advice_zh}<span>{advice_en}</span></p>");
    if !pills.is_empty() {
        body.push_str("<div class=\"pills\">");
        for pill in &pills {
            let _ = write!(body, "<span class=\"pill\">{pill}</span>");
        }
        body.push_str("</div>\n");
    }
    let _ = writeln!(body, "<p class=\"subject\">{}</p>\n</section>", escape(&report.subject));

    if report.verdict == Overall::NotFound {
        let found: Vec<&Check> = check("found").collect();
        let card = Card {
            id: "result",
            zh: "查询结果",
            en: "Result",
            checks: found,
            leads: [
                ("", ""),
                ("", ""),
                (
                    "未找到此产品。请核对包装上的批号，或向销售者、市场监管部门（12315）咨询。",
                    "No such product is recorded. Check the lot number on the package, or ask the seller or the market regulator (12315).",
                ),
            ],
        };
        body.push_str(&card.render(""));
    } else {
        body.push_str(&verdict_cards(report, &names));
    }
    body.push_str(&footer(report, context));
    document(&format!("{} {} — {}", report.verdict.name_zh(), report.verdict.name(), report.subject), &body)
}

fn verdict_cards(report: &Report, names: &BTreeMap<String, String>) -> String {
    let by_name = |name: &str| -> Vec<&Check> { report.checks.iter().filter(|c| c.name == name).collect() };
    let mut cards: Vec<(Severity, String)> = Vec::new();
    let mut genuine = by_name("integrity");
    genuine.extend(by_name("accountability"));
    genuine.extend(by_name("equivocation"));
    add(
        &mut cards,
        Card {
            id: "genuine",
            zh: "正品",
            en: "Genuine",
            checks: genuine,
            leads: [
                (
                    "正品：记录未被篡改，均由登记的责任人签名",
                    "Genuine: the records are unaltered and signed by registered people",
                ),
                ("记录可信度存疑", "The records' trust needs attention"),
                (
                    "真伪存疑：记录被篡改、伪造或签名人未获授权",
                    "Not genuine: a record is altered, forged or signed without authority",
                ),
            ],
        },
        "",
    );

    let mut certificates = String::new();
    for cert in &report.certificates {
        let issuer = names.get(&cert.issuer).map(|n| format!("{n} ({})", cert.issuer)).unwrap_or(cert.issuer.clone());
        let holder = names.get(&cert.holder).map(|n| format!("{n} ({})", cert.holder)).unwrap_or(cert.holder.clone());
        let _ = write!(
            certificates,
            "<dl class=\"kv\"><dt>证书编号 No.</dt><dd>{}</dd><dt>状态 Status</dt><dd><b>{}</b></dd>\
             <dt>有效期至 Valid until</dt><dd>{}</dd><dt>发证机构 Issuer</dt><dd>{}</dd><dt>持证人 Holder</dt><dd>{}</dd>",
            escape(&cert.number),
            escape(&cert.status),
            escape(&cert.valid_until),
            escape(&issuer),
            escape(&holder),
        );
        if !cert.history.is_empty() {
            let history: Vec<String> = cert
                .history
                .iter()
                .map(|(date, kind, _)| format!("{} {} {}", escape(date), kind.name_zh(), kind_en(*kind)))
                .collect();
            let _ = write!(certificates, "<dt>记录 History</dt><dd>{}</dd>", history.join("<br>"));
        }
        certificates.push_str("</dl>\n");
    }
    add(
        &mut cards,
        Card {
            id: "certificate",
            zh: "认证状态",
            en: "Certification",
            checks: by_name("certificate"),
            leads: [
                if report.certificates.is_empty() {
                    ("未见认证记录（并非所有产品都需要认证）", "No certificate recorded (not every product needs one)")
                } else {
                    ("认证有效", "Certified: the certificate is valid")
                },
                ("证书已暂停或存在问题", "The certificate is suspended or needs attention"),
                ("证书无效、伪造或被冒用", "The certificate is invalid, forged or used for another product"),
            ],
        },
        &certificates,
    );
    add(
        &mut cards,
        Card {
            id: "recall",
            zh: "召回",
            en: "Recalls",
            checks: by_name("recall"),
            leads: [
                ("未召回：本品及其原料批次均无召回", "Not recalled: neither this lot nor its input lots"),
                ("召回信息需要注意", "Recall information needs attention"),
                ("已召回：请停止使用", "RECALLED: stop using this product"),
            ],
        },
        "",
    );
    add(
        &mut cards,
        Card {
            id: "spot-check",
            zh: "监督抽查",
            en: "Spot checks and inspections",
            checks: by_name("spot_check"),
            leads: [
                ("未发现不合格的抽查或检验", "No spot check or inspection found it non-conformant"),
                ("抽查或检验结果需要注意", "A spot check or inspection needs attention"),
                ("抽查或检验不合格", "A spot check or inspection found it NON-CONFORMANT"),
            ],
        },
        "",
    );
    add(
        &mut cards,
        Card {
            id: "blacklist",
            zh: "黑名单",
            en: "Quality blacklist",
            checks: by_name("blacklist"),
            leads: [
                ("责任主体均未列入质量失信黑名单", "No responsible organisation is blacklisted"),
                ("责任主体已列入质量失信黑名单", "A responsible organisation is on the quality blacklist"),
                ("责任主体已列入质量失信黑名单", "A responsible organisation is on the quality blacklist"),
            ],
        },
        "",
    );
    let known = ["integrity", "accountability", "equivocation", "certificate", "recall", "spot_check", "blacklist"];
    let known = known.iter().chain(["source", "destination"].iter());
    let known: BTreeSet<&str> = known.copied().collect();
    let others: Vec<&Check> = report.checks.iter().filter(|c| !known.contains(c.name)).collect();
    add(
        &mut cards,
        Card {
            id: "other",
            zh: "其他检查",
            en: "Other checks",
            checks: others,
            leads: [
                ("其他检查通过", "Other checks passed"),
                ("其他检查需要注意", "Other checks need attention"),
                ("其他检查未通过", "Another check failed"),
            ],
        },
        "",
    );
    // Problems first, the traceability path among them when its source or
    // destination is the problem: a consumer of a recalled product, or of
    // one whose source is not on record, sees why without scrolling. The
    // sections without a problem keep their order, the responsible
    // organisations and the path last.
    let (path_severity, path) = path_card(report, names);
    cards.push((Severity::Ok, responsible_card(report)));
    cards.push((path_severity, path));
    cards.sort_by_key(|(severity, _)| std::cmp::Reverse(*severity));
    cards.into_iter().map(|(_, card)| card).collect()
}

fn add(cards: &mut Vec<(Severity, String)>, card: Card<'_>, extra: &str) {
    if !card.checks.is_empty() {
        cards.push((card.severity(), card.render(extra)));
    }
}

/// The organisations and people accountable (责任主体), one entry per
/// organisation, with what they recorded and links to those records.
fn responsible_card(report: &Report) -> String {
    struct Org<'a> {
        name: &'a str,
        people: BTreeSet<String>,
        kinds: Vec<EventKind>,
        records: Vec<String>,
    }
    let mut orgs: BTreeMap<&str, Org<'_>> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for r in &report.responsible {
        if r.uscc.is_empty() {
            continue;
        }
        let org = orgs.entry(&r.uscc).or_insert_with(|| {
            order.push(&r.uscc);
            Org { name: &r.organisation, people: BTreeSet::new(), kinds: Vec::new(), records: Vec::new() }
        });
        org.people.insert(if r.title.is_empty() { r.person.clone() } else { format!("{} · {}", r.person, r.title) });
        if !org.kinds.contains(&r.kind) {
            org.kinds.push(r.kind);
        }
        org.records.push(r.record.clone());
    }
    if orgs.is_empty() {
        return String::new();
    }
    let mut html = String::from(
        "<section class=\"card\" id=\"responsible\">\n<h2><span class=\"mark info\">i</span>责任主体 <small>Responsible organisations and people</small></h2>\n<ul class=\"orgs\">\n",
    );
    for uscc in order {
        let Some(org) = orgs.get(uscc) else { continue };
        let kinds: Vec<String> = org.kinds.iter().map(|k| format!("{} {}", k.name_zh(), kind_en(*k))).collect();
        let people: Vec<String> = org.people.iter().map(|p| escape(p)).collect();
        let _ = writeln!(
            html,
            "<li><div class=\"org\">{}</div><div class=\"uscc\">统一社会信用代码 USCC {}</div>\
             <div class=\"who\">签名人 Signed by: {}</div><div class=\"roles\">记录 Records: {}</div>{}</li>",
            escape(org.name),
            escape(uscc),
            people.join("; "),
            escape(&kinds.join(", ")),
            evidence_links(&org.records),
        );
    }
    html.push_str("</ul>\n</section>\n");
    html
}

/// The traceability path (追溯路径), oldest first, with the source and
/// destination checks above it, and the worst of their severities.
fn path_card(report: &Report, names: &BTreeMap<String, String>) -> (Severity, String) {
    let trace_checks: Vec<&Check> =
        report.checks.iter().filter(|c| c.name == "source" || c.name == "destination").collect();
    let severity = trace_checks.iter().map(|c| c.severity).max().unwrap_or(Severity::Ok);
    if report.path.is_empty() && trace_checks.is_empty() {
        return (severity, String::new());
    }
    let (zh, en) = match severity {
        Severity::Ok => ("来源可查，去向可追", "Source traceable, destination trackable"),
        _ => ("来源不明或记录不全", "The source is not fully on record"),
    };
    let mut html = format!(
        "<section class=\"card\" id=\"path\">\n<h2><span class=\"mark {}\">{}</span>追溯路径 <small>Traceability path</small></h2>\n\
         <p class=\"lead {}\">{zh}<span>{en}</span></p>\n",
        class_of(severity),
        mark_of(severity),
        class_of(severity),
    );
    for check in &trace_checks {
        let _ = writeln!(html, "<p class=\"detail\">{}</p>", escape(&check.detail));
    }
    html.push_str("<ol class=\"path\">\n");
    for step in &report.path {
        let link = evidence_href(&step.record)
            .map(|(href, seq)| {
                format!(" <a class=\"chip\" href=\"{}\" title=\"{}\">#{seq}</a>", escape(&href), escape(&step.record))
            })
            .unwrap_or_default();
        let _ = writeln!(
            html,
            "<li><div class=\"when\">{}</div><div class=\"what\"><span class=\"kind\">{} {}</span>{}</div>\
             <div class=\"by\">{}{link}</div></li>",
            escape(&step.when),
            step.kind.name_zh(),
            kind_en(step.kind),
            escape(&with_names(&step.what, names)),
            escape(&step.organisation),
        );
    }
    html.push_str("</ol>\n</section>\n");
    (severity, html)
}

fn footer(report: &Report, context: &PageContext<'_>) -> String {
    let separator = if context.path_and_query.contains('?') { '&' } else { '?' };
    let json = format!("{}{separator}format=json", context.path_and_query);
    format!(
        "<p class=\"foot\">查验日期 Checked on {} · 账本 Ledger {}<br>\
         每条证据附带包含证明和签名检查点，可独立验证。Every evidence link carries an inclusion proof and a signed checkpoint, \
         so anyone can check it.<br><a href=\"{}\">JSON</a></p>\n",
        escape(&report.as_of),
        escape(context.origin),
        escape(&json),
    )
}

/// What a consumer is told about a code that breaks a coding rule.
fn id_error_zh(error: &IdError) -> &'static str {
    match error {
        IdError::CheckDigit { .. } => "校验码错误：产品码可能印错、扫错或是伪造的",
        IdError::Length { .. } => "长度不符合编码规则",
        IdError::BadChar { .. } => "含有编码规则不允许的字符",
        IdError::QualifierOrder { .. } => "限定符顺序错误（应为 22、10、21）",
        IdError::DuplicateAi { .. } => "同一应用标识符出现多次",
        IdError::MissingGtin => "缺少商品条码 GTIN (01)",
        IdError::BadDate { .. } => "日期不存在",
        IdError::Syntax { .. } => "格式不符合 GS1 数字链接规则",
        _ => "不符合统一编码规则",
    }
}

/// 400: the code broke a rule of the unified coding rules (统一编码规则).
pub fn invalid_code_page(path: &str, error: &IdError) -> String {
    let body = format!(
        "<section class=\"banner invalid\">\n<div class=\"icon\">✗</div>\n<p class=\"word\">无效产品码<span>INVALID CODE</span></p>\n\
         <p class=\"advice\">{}<span>This product code breaks a GS1 coding rule: {}</span></p>\n\
         <p class=\"subject\">{}</p>\n</section>\n\
         <section class=\"card\">\n<h2><span class=\"mark invalid\">✗</span>哪条规则 <small>Which rule failed</small></h2>\n\
         <p class=\"lead invalid\">{}<span>{}</span></p>\n\
         <p class=\"detail\">请核对包装上的条码或二维码，或手动输入包装上印的数字。Check the barcode or QR code on the package, \
         or type the digits printed under it.</p>\n</section>\n",
        id_error_zh(error),
        escape(&error.to_string()),
        escape(path),
        id_error_zh(error),
        escape(&error.to_string()),
    );
    document("无效产品码 Invalid product code", &body)
}

/// Any other failure: a plain page with a status word and a reason.
pub fn error_page(zh: &str, en: &str, detail: &str) -> String {
    let body = format!(
        "<section class=\"banner notfound\">\n<div class=\"icon\">!</div>\n<p class=\"word\">{}<span>{}</span></p>\n\
         <p class=\"advice\">{}</p>\n</section>\n",
        escape(zh),
        escape(en),
        escape(detail),
    );
    document(&format!("{zh} {en}"), &body)
}

/// `GET /`: what this resolver is and how to use it.
pub fn home_page(origin: &str, log_id: &str, vkey: &str) -> String {
    let body = format!(
        "<section class=\"card\">\n<h2>产品追溯查询 <small>Product traceability resolver</small></h2>\n\
         <p>扫描包装上的二维码（GS1 数字链接），即可查看产品是否为正品、是否已认证、是否被召回、由谁负责，以及完整的追溯路径。</p>\n\
         <p>Scan the QR code on a package (a GS1 Digital Link) to see whether the product is genuine, certified and not \
         recalled, who is responsible for it, and its whole traceability path.</p>\n</section>\n\
         <section class=\"card\">\n<h2>链接格式 <small>Link forms</small></h2>\n<dl class=\"kv\">\
         <dt>商品 Product</dt><dd><code>/01/&lt;GTIN&gt;</code></dd>\
         <dt>批次 Lot</dt><dd><code>/01/&lt;GTIN&gt;/10/&lt;lot&gt;</code></dd>\
         <dt>单品 Item</dt><dd><code>/01/&lt;GTIN&gt;/10/&lt;lot&gt;/21/&lt;serial&gt;</code></dd>\
         <dt>序列号 Serial</dt><dd><code>/01/&lt;GTIN&gt;/21/&lt;serial&gt;</code></dd></dl>\n\
         <p class=\"detail\">A <code>/22/&lt;CPV&gt;</code> qualifier and an expiry date <code>?17=YYMMDD</code> are accepted. \
         Send <code>Accept: application/json</code> (or add <code>?format=json</code>) for the verdict as JSON. \
         <code>/evidence/&lt;log id&gt;/&lt;seq&gt;</code> serves a record with its inclusion proof and signed checkpoint; \
         <code>/metrics</code> serves Prometheus metrics.</p>\n</section>\n\
         <section class=\"card\">\n<h2>本账本 <small>This ledger</small></h2>\n<dl class=\"kv\">\
         <dt>名称 Origin</dt><dd>{}</dd><dt>日志 Log id</dt><dd><code>{}</code></dd>\
         <dt>验证密钥 Verifier key</dt><dd><code>{}</code></dd></dl>\n\
         <p class=\"detail\">证据可用此密钥独立验证，无需信任本服务器。Evidence can be checked with this key without \
         trusting this server; get the key from the agency itself, not only from this page.</p>\n</section>\n",
        escape(origin),
        escape(log_id),
        escape(vkey),
    );
    document("qtrace 产品追溯查询 Product traceability resolver", &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use qtrace_ledger::verdict::{CertificateView, Responsible, Step};

    const LOG: &str = "aa00000000000000000000000000000000000000000000000000000000000000";
    const HASH: &str = "bb00000000000000000000000000000000000000000000000000000000000000";

    fn check(name: &'static str, severity: Severity, detail: &str, evidence: Vec<String>) -> Check {
        Check { name, severity, detail: detail.into(), evidence }
    }

    fn report(verdict: Overall) -> Report {
        let cite = format!("{LOG}/7/{HASH}");
        Report {
            verdict,
            subject: "product 09520123456788 lot <b>P-1</b>".into(),
            checks: vec![
                check("integrity", Severity::Ok, "all records unaltered", vec![cite.clone()]),
                check("accountability", Severity::Ok, "signed", vec![]),
                check("recall", Severity::Ok, "no recall", vec![]),
                check("certificate", Severity::Ok, "certified", vec![cite.clone()]),
                check("witnesses", Severity::Warning, "one witness short", vec![]),
            ],
            responsible: vec![Responsible {
                record: cite.clone(),
                kind: EventKind::Production,
                uscc: "92320900MA1N3T5C5Q".into(),
                organisation: "Example Dairy <script>alert(1)</script>".into(),
                person: "张伟".into(),
                title: "首席质量官".into(),
            }],
            path: vec![Step {
                record: cite,
                kind: EventKind::Shipment,
                when: "2026-11-05".into(),
                what: "shipped 09520123456788 lot P-1 from 92320900MA1N3T5C5Q to X".into(),
                organisation: "Example Dairy".into(),
            }],
            certificates: vec![CertificateView {
                issuer: "913301007042187B2H".into(),
                number: "CQC-1".into(),
                holder: "92320900MA1N3T5C5Q".into(),
                status: "valid (有效)".into(),
                valid_until: "2029-12-31".into(),
                history: vec![("2026-01-01".into(), EventKind::CertificateIssued, String::new())],
            }],
            recalled: false,
            as_of: "2026-11-20".into(),
        }
    }

    #[test]
    fn escapes_record_text() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        let page = verdict_page(&report(Overall::Valid), &PageContext { path_and_query: "/01/x?<y>", origin: "o" });
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("lot &lt;b&gt;P-1&lt;/b&gt;"));
        assert!(page.contains("?&lt;y&gt;&amp;format=json"));
    }

    #[test]
    fn valid_page_shows_every_section() {
        let page = verdict_page(&report(Overall::Valid), &PageContext { path_and_query: "/01/x", origin: "o" });
        for expected in [
            "name=\"viewport\"",
            "有效<span>VALID</span>",
            "正品",
            "认证状态",
            "召回",
            "责任主体",
            "追溯路径",
            "其他检查",
            "张伟 · 首席质量官",
            &format!("href=\"/evidence/{LOG}/7\""),
            // Organisation codes in the path get their names.
            "Example Dairy &lt;script&gt;alert(1)&lt;/script&gt; (92320900MA1N3T5C5Q)",
        ] {
            assert!(page.contains(expected), "{expected:?} missing");
        }
        assert!(!page.contains("http://") && !page.contains("https://"), "no external assets");
    }

    /// The section ids of a page, in the order they appear.
    fn section_order(page: &str) -> Vec<&str> {
        page.split("<section class=\"card\" id=\"").skip(1).filter_map(|rest| rest.split('"').next()).collect()
    }

    #[test]
    fn problems_come_first_and_the_banner_names_them() {
        let with = |verdict: Overall, changes: &[(&'static str, Severity, &str)]| {
            let mut r = report(verdict);
            for (name, severity, detail) in changes {
                match r.checks.iter_mut().find(|c| c.name == *name) {
                    Some(c) => (c.severity, c.detail) = (*severity, (*detail).into()),
                    None => r.checks.push(check(name, *severity, detail, vec![])),
                }
            }
            r
        };
        let source_ok = ("source", Severity::Ok, "source traceable (来源可查)");
        let witnesses_ok = ("witnesses", Severity::Ok, "cosigned");
        let unsourced = ("source", Severity::Warning, "no production record creates lot P-1 (来源不明)");
        let recalled = ("recall", Severity::Invalid, "recalled: melamine");
        // (name, report, reasons on the banner, section order)
        let cases: Vec<(&str, Report, Vec<&str>, Vec<&str>)> = vec![
            (
                "valid",
                with(Overall::Valid, &[source_ok, witnesses_ok]),
                vec![],
                vec!["genuine", "certificate", "recall", "other", "responsible", "path"],
            ),
            (
                "source not on record",
                with(Overall::Warning, &[unsourced, witnesses_ok]),
                vec!["来源不明 Source not on record"],
                vec!["path", "genuine", "certificate", "recall", "other", "responsible"],
            ),
            (
                "recalled, and short of witnesses",
                with(Overall::Invalid, &[source_ok, recalled]),
                vec!["已召回 Recalled", "见证不足 Not enough witnesses"],
                vec!["recall", "other", "genuine", "certificate", "responsible", "path"],
            ),
            (
                "recalled and unsourced",
                with(Overall::Invalid, &[unsourced, recalled, witnesses_ok]),
                vec!["已召回 Recalled", "来源不明 Source not on record"],
                vec!["recall", "path", "genuine", "certificate", "other", "responsible"],
            ),
        ];
        for (name, report, want_reasons, want_order) in cases {
            let page = verdict_page(&report, &PageContext { path_and_query: "/01/x", origin: "o" });
            let banner = page.split("</section>").next().unwrap_or_default();
            let shown: Vec<&str> =
                banner.split("<p class=\"reason\">").skip(1).filter_map(|rest| rest.split("</p>").next()).collect();
            assert_eq!(shown, want_reasons, "{name}: banner reasons");
            assert_eq!(section_order(&page), want_order, "{name}: section order");
        }
    }

    #[test]
    fn not_found_page_is_short() {
        let mut r = report(Overall::NotFound);
        r.checks = vec![check("found", Severity::Invalid, "the ledger has no record (查无此产品)", vec![])];
        let page = verdict_page(&r, &PageContext { path_and_query: "/01/x", origin: "o" });
        assert!(page.contains("未找到") && page.contains("查无此产品"));
        assert!(!page.contains("追溯路径"));
    }

    #[test]
    fn evidence_links_only_for_citations() {
        assert_eq!(evidence_href(&format!("{LOG}/12/{HASH}")), Some((format!("/evidence/{LOG}/12"), 12)));
        assert_eq!(
            evidence_href(&format!("{LOG}/3/{HASH} signed by 张伟 for X")),
            Some((format!("/evidence/{LOG}/3"), 3))
        );
        for not_a_cite in ["92320900MA1N3T5C5Q", "checkpoint x size 3", &format!("{LOG}/x/{HASH}"), &format!("{LOG}/1")]
        {
            assert_eq!(evidence_href(not_a_cite), None, "{not_a_cite}");
        }
    }
}
