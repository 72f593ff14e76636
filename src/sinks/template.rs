//! Body templates: what an `http` sink sends and what a `command` sink
//! writes on stdin, shaped from the record by a minijinja template (`body:`
//! in `routes.yaml`, the record as `record`).
//!
//! [`Template::compile`] is the one check, run when the config loads
//! (`check`, `serve`, reload) and again when the sink is built: a syntax
//! error, a filter or test that does not exist, or a name other than
//! `record` (and minijinja's globals, `range`, `dict`, ...) is an error with
//! its line and column in the template. [`Template::render`] runs per
//! delivery; a value the record lacks is an error naming it
//! (`record.shipping.address.city is undefined`), never an empty string, so
//! a partner never receives an order with a blank field.
//!
//! Filters a shop needs besides minijinja's: `money(currency)` and
//! `decimal(currency)` format an amount in minor units, `json` is `tojson`
//! by a shorter name. Output is never HTML-escaped: a body is JSON or text.

use std::collections::BTreeSet;
use std::fmt;

use minijinja::machinery::{Instruction, Instructions};
use minijinja::value::Kwargs;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value};

mod values;

/// The name the record has inside a template.
pub const RECORD: &str = "record";
/// The template's name inside its environment; never shown.
const NAME: &str = "body";
/// Longest excerpt of the template a render error quotes.
const EXCERPT_CHARS: usize = 80;

/// A compiled body template.
pub struct Template {
    env: Environment<'static>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Template")
    }
}

/// Why a template cannot be used, and where in its text (1-based; line 0
/// when minijinja did not say).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (template line {line}, column {column})")]
pub struct TemplateError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Template {
    /// Compiles `source` and checks every filter, test and name it uses.
    pub fn compile(source: &str) -> Result<Template, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        // Bodies are JSON or text: no HTML escaping, whatever the name.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_debug(true);
        // A tag on its own line leaves no blank line behind (text bodies,
        // a packing slip); the one newline a YAML `|` block ends with is
        // dropped, as Jinja does.
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        env.add_filter("money", money);
        env.add_filter("decimal", decimal);
        env.add_filter("tojson", tojson);
        env.add_filter("json", tojson);
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|e| syntax_error(source, &e))?;
        let template = Template { env };
        template.check_names(source)?;
        Ok(template)
    }

    /// Every filter and test exists; every name read is `record`, one the
    /// template sets itself, or a global.
    fn check_names(&self, source: &str) -> Result<(), TemplateError> {
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| syntax_error(source, &e))?;
        let compiled = minijinja::machinery::get_compiled_template(&template);
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        let all = std::iter::once(&compiled.instructions).chain(compiled.blocks.values());
        for instructions in all {
            for (pc, instruction) in instruction_list(instructions) {
                let (kind, name) = match instruction {
                    Instruction::ApplyFilter(name, ..) => ("filter", *name),
                    Instruction::PerformTest(name, ..) => ("test", *name),
                    _ => continue,
                };
                if seen.insert((kind, name)) && !self.exists(kind, name) {
                    let (line, column) = place(source, instructions, pc);
                    problems.push(TemplateError {
                        line,
                        column,
                        message: format!("unknown {kind} `{name}`{}", known_hint(kind)),
                    });
                }
            }
        }
        let globals: BTreeSet<&str> = self.env.globals().map(|(name, _)| name).collect();
        let mut unknown: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|name| name != RECORD && !globals.contains(name.as_str()))
            .collect();
        unknown.sort();
        for name in unknown {
            let (line, column) = std::iter::once(&compiled.instructions)
                .chain(compiled.blocks.values())
                .find_map(|instructions| {
                    instruction_list(instructions)
                        .find(|(_, i)| {
                            matches!(i, Instruction::Lookup(n) | Instruction::CallFunction(n, _) if *n == name)
                        })
                        .map(|(pc, _)| place(source, instructions, pc))
                })
                .unwrap_or((0, 0));
            problems.push(TemplateError {
                line,
                column,
                message: format!(
                    "unknown name `{name}`: a template sees the record as `{RECORD}` (e.g. `{{{{ {RECORD}.customer.email }}}}`)"
                ),
            });
        }
        problems.sort_by_key(|p| (p.line, p.column));
        match problems.into_iter().next() {
            Some(first) => Err(first),
            None => Ok(()),
        }
    }

    /// Whether the environment has the filter or test `name`: rendering it
    /// alone fails with "unknown" only when it does not.
    fn exists(&self, kind: &str, name: &str) -> bool {
        let probe = match kind {
            "filter" => format!("{{{{ none | {name} }}}}"),
            _ => format!("{{{{ none is {name} }}}}"),
        };
        match self.env.render_str(&probe, ()) {
            Ok(_) => true,
            Err(e) => !matches!(e.kind(), ErrorKind::UnknownFilter | ErrorKind::UnknownTest),
        }
    }

    /// The body for one record: `record` is the record's JSON.
    pub fn render(&self, record: &[u8]) -> Result<String, RenderError> {
        let record = record_values(record)?;
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| RenderError(e.to_string()))?;
        template
            .render(minijinja::context! { record => record })
            .map_err(|e| render_error(&e))
    }
}

/// The record's JSON as the values a template reads (`record`).
pub fn record_values(record: &[u8]) -> Result<Value, RenderError> {
    values::from_json(record).map_err(|e| RenderError(format!("the record is not JSON: {e}")))
}

/// Why a record could not be rendered; says which value and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

fn instruction_list<'a, 's>(
    instructions: &'a Instructions<'s>,
) -> impl Iterator<Item = (u32, &'a Instruction<'s>)> {
    (0..).map_while(move |pc| instructions.get(pc).map(|instruction| (pc, instruction)))
}

/// The 1-based line and column of instruction `pc` in `source`.
fn place(source: &str, instructions: &Instructions<'_>, pc: u32) -> (usize, usize) {
    match instructions.get_span(pc) {
        Some(span) => line_column(source, span.start_offset as usize),
        None => (instructions.get_line(pc).unwrap_or(0), 1),
    }
}

/// The 1-based line and column (in characters) of byte `offset`.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn known_hint(kind: &str) -> &'static str {
    if kind == "filter" {
        " (besides minijinja's built-in filters: `money`, `decimal`, `json`)"
    } else {
        ""
    }
}

fn syntax_error(source: &str, e: &Error) -> TemplateError {
    let (line, column) = match e.range() {
        Some(range) => line_column(source, range.start),
        None => (e.line().unwrap_or(0), 1),
    };
    let message = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    TemplateError {
        line,
        column,
        message,
    }
}

/// A render error as a delivery reports it: an undefined value by the
/// expression that read it, anything else by minijinja's words; with the
/// template line.
fn render_error(e: &Error) -> RenderError {
    let expression = e
        .template_source()
        .zip(e.range())
        .and_then(|(source, range)| source.get(expression(source, range)))
        .map(|text| {
            let text = text.trim();
            if text.chars().count() > EXCERPT_CHARS {
                let cut: String = text.chars().take(EXCERPT_CHARS).collect();
                format!("{cut}...")
            } else {
                text.to_owned()
            }
        });
    let line = e
        .line()
        .map(|l| format!(" (template line {l})"))
        .unwrap_or_default();
    let message = match (e.kind(), expression) {
        (ErrorKind::UndefinedError, Some(expression)) => format!("{expression} is undefined"),
        (_, expression) => {
            let mut message = e.kind().to_string();
            if let Some(detail) = e.detail() {
                message.push_str(": ");
                message.push_str(detail);
            }
            if let Some(expression) = expression {
                message.push_str(&format!(" in `{expression}`"));
            }
            message
        }
    };
    RenderError(format!("body template: {message}{line}"))
}

/// The expression an error is about: the dotted path around the failed
/// lookup, or for a filter that failed, the value piped into it.
fn expression(source: &str, range: std::ops::Range<usize>) -> std::ops::Range<usize> {
    let piped = source
        .get(..range.start)
        .map(str::trim_end)
        .and_then(|before| before.strip_suffix('|'))
        .map(|before| before.trim_end().len());
    match piped {
        Some(end) => path_start(source, end)..end,
        None => path_start(source, range.start)..path_end(source, range.end),
    }
}

/// Where the dotted path around the failed lookup at `start` begins:
/// minijinja points at a part of it (`.address.city`), a reader wants the
/// whole path (`record.shipping.address.city`).
fn path_start(source: &str, start: usize) -> usize {
    let Some(before) = source.get(..start) else {
        return start;
    };
    let kept = before
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'))
        .map(char::len_utf8)
        .sum::<usize>();
    start - kept
}

/// Where that path ends: past lookups after the one that failed.
fn path_end(source: &str, end: usize) -> usize {
    let Some(after) = source.get(end..) else {
        return end;
    };
    end + after
        .chars()
        .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '.'))
        .map(char::len_utf8)
        .sum::<usize>()
}

/// minijinja's `tojson`, but a value the record lacks is an error, as
/// when printed: serialized, it would silently become `null`.
fn tojson(value: &Value, indent: Option<Value>, args: Kwargs) -> Result<Value, Error> {
    if value.is_undefined() {
        return Err(Error::from(ErrorKind::UndefinedError));
    }
    minijinja::filters::tojson(value, indent, args)
}

/// Currencies whose minor unit is the unit (Stripe's zero-decimal list).
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];
/// Currencies with three decimals (Stripe's three-decimal list).
const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];
/// Symbols written before the amount; any other currency is written after
/// it by its code (`12.50 CHF`).
const SYMBOLS: &[(&str, &str)] = &[("usd", "$"), ("eur", "€"), ("gbp", "£"), ("jpy", "¥")];

/// Whether `list` holds `currency`, in any case.
fn listed(list: &[&str], currency: &str) -> bool {
    list.iter().any(|c| c.eq_ignore_ascii_case(currency))
}

/// How many decimals `currency`'s minor unit has.
fn decimals(currency: &str) -> usize {
    if listed(ZERO_DECIMAL, currency) {
        0
    } else if listed(THREE_DECIMAL, currency) {
        3
    } else {
        2
    }
}

/// The integer amount in minor units a money filter was given.
fn minor_units(amount: &Value) -> Result<i64, Error> {
    if amount.is_undefined() {
        return Err(Error::from(ErrorKind::UndefinedError));
    }
    i64::try_from(amount.clone()).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("an amount in minor units (an integer) was expected, got {amount}"),
        )
    })
}

/// Appends `minor` (in minor units, no sign) as a decimal number with
/// `places` decimals, `grouped` with commas every three digits: `300000, 2`
/// → `3,000.00`. Per call of a filter in a loop: no allocation but `out`'s.
fn push_major_units(out: &mut String, minor: u64, places: usize, grouped: bool) {
    // u64::MAX has 20 digits; `places` is at most 3, so at most 20 with
    // the zeros that pad `5` to `0.05`.
    let mut digits = [b'0'; 24];
    let mut len = 0;
    let mut rest = minor;
    while rest > 0 || len <= places {
        digits[digits.len() - 1 - len] = b'0' + (rest % 10) as u8;
        rest /= 10;
        len += 1;
    }
    let digits = &digits[digits.len() - len..];
    let (whole, fraction) = digits.split_at(len - places);
    for (i, &d) in whole.iter().enumerate() {
        if grouped && i > 0 && (whole.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(char::from(d));
    }
    if !fraction.is_empty() {
        out.push('.');
        fraction.iter().for_each(|&d| out.push(char::from(d)));
    }
}

/// `{{ 3000 | money("usd") }}` → `$30.00`; `{{ 3000 | money("jpy") }}` →
/// `¥3,000`; `{{ 1250 | money("chf") }}` → `12.50 CHF`.
fn money(amount: &Value, currency: &str) -> Result<String, Error> {
    let minor = minor_units(amount)?;
    let symbol = SYMBOLS
        .iter()
        .find(|(code, _)| code.eq_ignore_ascii_case(currency))
        .map(|(_, symbol)| *symbol);
    let mut out = String::with_capacity(24 + currency.len());
    if minor < 0 {
        out.push('-');
    }
    out.extend(symbol);
    push_major_units(&mut out, minor.unsigned_abs(), decimals(currency), true);
    if symbol.is_none() {
        out.push(' ');
        out.extend(currency.chars().map(|c| c.to_ascii_uppercase()));
    }
    Ok(out)
}

/// `{{ 3000 | decimal("usd") }}` → `30.00`: the amount for an API that
/// takes major units, no symbol or grouping.
fn decimal(amount: &Value, currency: &str) -> Result<String, Error> {
    let minor = minor_units(amount)?;
    let mut out = String::with_capacity(24);
    if minor < 0 {
        out.push('-');
    }
    push_major_units(&mut out, minor.unsigned_abs(), decimals(currency), false);
    Ok(out)
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;
