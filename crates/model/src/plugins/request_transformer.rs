//! request-transformer: rewrites the method, URI, headers, query and body upstream.

use serde::{Deserialize, Serialize};

use super::PluginSchema;
use crate::input::Reader;

/// OSS `typedefs.protocols`: recent Kong allows this plugin on any protocol, while
/// defaulting to the HTTP ones.
use crate::typedefs::PROTOCOLS;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestTransformerConfig {
    pub http_method: Option<String>,
    pub remove: Transforms,
    pub rename: Transforms,
    pub replace: ReplaceTransforms,
    pub add: Transforms,
    pub append: Transforms,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transforms {
    pub body: Vec<String>,
    pub headers: Vec<String>,
    pub querystring: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaceTransforms {
    pub body: Vec<String>,
    pub headers: Vec<String>,
    pub querystring: Vec<String>,
    pub uri: Option<String>,
}

// --- element validators, shared with response-transformer ---

/// Lua's `entry:match("^([^:]+):*(.-)$")`: the name up to the first colon and the value
/// after the colons that follow it; no name when the entry starts with a colon.
pub(crate) fn split_pair(s: &str) -> (Option<&str>, &str) {
    match s.find(':') {
        Some(0) => (None, ""),
        Some(i) => (Some(&s[..i]), s[i..].trim_start_matches(':')),
        None => (Some(s), ""),
    }
}

/// `match = "^[^:]+:.*$"`.
pub(crate) fn colon_pair(s: &str) -> Result<(), String> {
    if s.find(':').is_some_and(|i| i > 0) {
        Ok(())
    } else {
        Err(format!("invalid value: {s}"))
    }
}

/// `kong.tools.http.validate_header_value`: no control characters but tab.
fn header_value(v: &str) -> bool {
    !v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

/// Kong's `validate_headers(pair, value_validator)`.
fn validate_headers(pair: &str, value_ok: Option<fn(&str) -> bool>) -> Result<(), String> {
    let (name, value) = split_pair(pair);
    match name {
        // `tostring(nil)`
        None => return Err("'nil' is not a valid header".into()),
        Some(n) if !super::valid_header_name(n) => {
            return Err(format!("'{n}' is not a valid header"))
        }
        Some(_) => {}
    }
    match value_ok {
        Some(ok) if !ok(value) => Err(format!("'{value}' is not a valid header")),
        _ => Ok(()),
    }
}

/// `headers_array` elements: a header name (anything after a colon is ignored).
pub(crate) fn header_only(pair: &str) -> Result<(), String> {
    validate_headers(pair, None)
}

/// `colon_headers_array` elements (renames): `old:new`, both header names.
pub(crate) fn colon_headers(pair: &str) -> Result<(), String> {
    colon_pair(pair)?;
    validate_headers(pair, Some(super::valid_header_name))
}

/// `colon_header_value(s)_array` elements: `name:value`.
pub(crate) fn colon_header_values(pair: &str) -> Result<(), String> {
    colon_pair(pair)?;
    validate_headers(pair, Some(header_value))
}

/// `check_for_value`: `name:value` with a value that compiles as a Penlight template.
fn check_for_value(entry: &str) -> Result<(), String> {
    let (name, value) = split_pair(entry);
    // Kong throws concatenating a nil name; the entry is refused either way.
    let name = name.unwrap_or("");
    if value.is_empty() {
        return Err(format!("key '{name}' has no value"));
    }
    template::check(value)
        .map_err(|e| format!("value '{value}' is not in supported format, error:{e}"))
}

/// `typedefs.http_method`: `^%u+$`.
fn http_method(s: &str) -> Result<(), String> {
    if s.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(format!("invalid value: {s}"))
    }
}

fn read_transforms(
    r: &mut Reader<'_>,
    key: &'static str,
    headers: fn(&str) -> Result<(), String>,
    strings: fn(&str) -> Result<(), String>,
) -> Transforms {
    r.record(key, |r| Transforms {
        body: r.strings("body", false, strings).unwrap_or_default(),
        headers: r.strings("headers", false, headers).unwrap_or_default(),
        querystring: r.strings("querystring", false, strings).unwrap_or_default(),
    })
    .unwrap_or_default()
}

impl PluginSchema for RequestTransformerConfig {
    const NAME: &'static str = "request-transformer";
    const PRIORITY: i64 = 801;
    const VERSION: &'static str = "3.9.0";
    const PROTOCOLS: &'static [&'static str] = PROTOCOLS;
    const DEFAULT_PROTOCOLS: &'static [&'static str] = super::HTTP_PROTOCOLS;

    fn read(r: &mut Reader<'_>) -> Self {
        let any = |_: &str| Ok(());
        RequestTransformerConfig {
            http_method: r.string_with("http_method", http_method),
            remove: read_transforms(r, "remove", header_only, any),
            rename: read_transforms(r, "rename", colon_headers, check_for_value),
            replace: r
                .record("replace", |r| ReplaceTransforms {
                    body: r
                        .strings("body", false, check_for_value)
                        .unwrap_or_default(),
                    headers: r
                        .strings("headers", false, colon_header_values)
                        .unwrap_or_default(),
                    querystring: r
                        .strings("querystring", false, check_for_value)
                        .unwrap_or_default(),
                    uri: r.string("uri"),
                })
                .unwrap_or_default(),
            add: read_transforms(r, "add", colon_header_values, check_for_value),
            append: read_transforms(r, "append", colon_header_values, check_for_value),
        }
    }
}

/// Whether a value compiles as a `pl.template` (`$(expr)` parts are Lua expressions),
/// with LuaJIT's parser messages. Penlight wraps each part as `((expr) or '')` on its
/// own line of the generated chunk `TMP`.
mod template {
    pub fn check(value: &str) -> Result<(), String> {
        let b = value.as_bytes();
        let mut i = 0;
        let mut nth = 0;
        while i + 1 < b.len() {
            if b[i] == b'$' && b[i + 1] == b'(' {
                if let Some(end) = balanced(b, i + 1) {
                    nth += 1;
                    // Two header lines, then a text line and an expression line per part;
                    // `%q` keeps each newline of the text as an escaped newline.
                    let line = 2 + 2 * nth + value[..i].matches('\n').count();
                    let inner = &value[i + 2..end];
                    check_expr(inner, line).map_err(|e| format!("[string \"TMP\"]:{e}"))?;
                    i = end + 1;
                    continue;
                }
            }
            i += 1;
        }
        Ok(())
    }

    /// Lua's `%b()` from `open`: the index of the matching `)`.
    fn balanced(b: &[u8], open: usize) -> Option<usize> {
        let mut depth = 0usize;
        for (j, &c) in b.iter().enumerate().skip(open) {
            if c == b'(' {
                depth += 1;
            } else if c == b')' {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
        }
        None
    }

    #[derive(Clone, Copy, PartialEq, Debug)]
    enum K {
        Name,
        Number,
        Str,
        Sym,
        Eof,
        /// A lexer error, raised when the parser reaches it.
        Bad(&'static str),
    }

    #[derive(Clone, Copy, Debug)]
    struct Tok<'a> {
        k: K,
        text: &'a str,
        line: usize,
    }

    const KEYWORDS: &[&str] = &[
        "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "if", "in",
        "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
    ];
    const SYMBOLS: &[&str] = &[
        "...", "..", "==", "~=", "<=", ">=", "+", "-", "*", "/", "%", "^", "#", "<", ">", "=",
        "(", ")", "{", "}", "[", "]", ";", ":", ",", ".",
    ];

    fn lex(src: &str, mut line: usize) -> Vec<Tok<'_>> {
        let b = src.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
        while i < b.len() {
            let c = b[i];
            if c == b'\n' {
                line += 1;
                i += 1;
                continue;
            }
            if c.is_ascii_whitespace() || c == 0x0b {
                i += 1;
                continue;
            }
            let (start, start_line) = (i, line);
            let tok = move |k, end: usize| Tok {
                k,
                text: &src[start..end],
                line: start_line,
            };
            if src[i..].starts_with("--") {
                i += 2;
                if let Some(level) = long_bracket(&b[i..]) {
                    match close_long(src, i + level + 2, level) {
                        Some(end) => {
                            line += src[i..end].matches('\n').count();
                            i = end;
                        }
                        None => {
                            out.push(Tok { k: K::Bad("unfinished long comment"), text: "<eof>", line });
                            return out;
                        }
                    }
                } else {
                    while i < b.len() && b[i] != b'\n' {
                        i += 1;
                    }
                }
                continue;
            }
            if ident(c) && !c.is_ascii_digit() {
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                out.push(tok(K::Name, i));
            } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
                // LuaJIT reads any run of alphanumerics, dots and exponent signs.
                while i < b.len() {
                    let d = b[i];
                    let exp = matches!(d, b'+' | b'-') && matches!(b[i - 1], b'e' | b'E' | b'p' | b'P');
                    if ident(d) || d == b'.' || exp {
                        i += 1;
                    } else {
                        break;
                    }
                }
                let k = if valid_number(&src[start..i]) { K::Number } else { K::Bad("malformed number") };
                out.push(tok(k, i));
            } else if c == b'"' || c == b'\'' {
                i += 1;
                let mut closed = false;
                while i < b.len() {
                    match b[i] {
                        b'\\' => {
                            if b.get(i + 1) == Some(&b'\n') {
                                line += 1;
                            }
                            i += 2;
                        }
                        b'\n' => break,
                        d if d == c => {
                            i += 1;
                            closed = true;
                            break;
                        }
                        _ => i += 1,
                    }
                }
                let i2 = i.min(b.len());
                if !closed {
                    out.push(Tok { k: K::Bad("unfinished string"), text: &src[start..i2], line });
                    return out;
                }
                out.push(tok(K::Str, i2));
            } else if let Some(level) = long_bracket(&b[i..]) {
                match close_long(src, i + level + 2, level) {
                    Some(end) => {
                        out.push(tok(K::Str, end));
                        line += src[start..end].matches('\n').count();
                        i = end;
                    }
                    None => {
                        out.push(Tok { k: K::Bad("unfinished long string"), text: "<eof>", line });
                        return out;
                    }
                }
            } else if let Some(sym) = SYMBOLS.iter().find(|s| src[i..].starts_with(**s)) {
                i += sym.len();
                out.push(tok(K::Sym, i));
            } else {
                // Any other character is a one-character token the parser cannot use.
                let len = src[i..].chars().next().map_or(1, char::len_utf8);
                i += len;
                out.push(tok(K::Sym, i));
            }
        }
        out.push(Tok { k: K::Eof, text: "<eof>", line });
        out
    }

    /// `[[` or `[==[`: the number of `=`.
    fn long_bracket(b: &[u8]) -> Option<usize> {
        if b.first() != Some(&b'[') {
            return None;
        }
        let level = b[1..].iter().take_while(|&&c| c == b'=').count();
        (b.get(level + 1) == Some(&b'[')).then_some(level)
    }

    fn close_long(src: &str, from: usize, level: usize) -> Option<usize> {
        let close = format!("]{}]", "=".repeat(level));
        src.get(from..)?.find(&close).map(|p| from + p + close.len())
    }

    fn valid_number(s: &str) -> bool {
        let s = s.trim_end_matches(['i', 'I']);
        let s = s
            .strip_suffix("ULL")
            .or_else(|| s.strip_suffix("ull"))
            .or_else(|| s.strip_suffix("LL"))
            .or_else(|| s.strip_suffix("ll"))
            .unwrap_or(s);
        if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            let mant = hex.split(['p', 'P']).next().unwrap_or("");
            return !mant.is_empty()
                && mant.bytes().all(|c| c.is_ascii_hexdigit() || c == b'.')
                && mant.matches('.').count() <= 1;
        }
        s.parse::<f64>().is_ok()
    }

    struct Parser<'a> {
        toks: Vec<Tok<'a>>,
        pos: usize,
    }

    type Res = Result<(), String>;

    impl<'a> Parser<'a> {
        fn cur(&self) -> Tok<'a> {
            self.toks[self.pos.min(self.toks.len() - 1)]
        }
        fn is(&self, sym: &str) -> bool {
            let t = self.cur();
            matches!(t.k, K::Sym | K::Name) && t.text == sym
        }
        fn is_name(&self) -> bool {
            let t = self.cur();
            t.k == K::Name && !KEYWORDS.contains(&t.text)
        }
        fn err(&self, msg: &str) -> String {
            let t = self.cur();
            format!("{}: {msg} near '{}'", t.line, t.text)
        }
        fn next(&mut self) -> Res {
            self.pos += 1;
            match self.cur().k {
                K::Bad(m) => Err(self.err(m)),
                _ => Ok(()),
            }
        }
        fn check(&mut self, sym: &str) -> Res {
            if self.is(sym) {
                self.next()
            } else {
                Err(self.err(&format!("'{sym}' expected")))
            }
        }
        fn close(&mut self, what: &str, who: &str, line: usize) -> Res {
            if self.is(what) {
                self.next()
            } else if self.cur().line == line {
                Err(self.err(&format!("'{what}' expected")))
            } else {
                Err(self.err(&format!("'{what}' expected (to close '{who}' at line {line})")))
            }
        }
        fn name(&mut self) -> Res {
            if self.is_name() {
                self.next()
            } else {
                Err(self.err("'<name>' expected"))
            }
        }

        fn expr(&mut self) -> Res {
            if self.is("not") || self.is("-") || self.is("#") {
                self.next()?;
                self.expr()?;
            } else {
                self.simple()?;
            }
            const BINOPS: &[&str] = &[
                "+", "-", "*", "/", "%", "^", "..", "==", "~=", "<", "<=", ">", ">=", "and", "or",
            ];
            while BINOPS.iter().any(|op| self.is(op)) {
                self.next()?;
                self.expr_operand()?;
            }
            Ok(())
        }

        fn expr_operand(&mut self) -> Res {
            while self.is("not") || self.is("-") || self.is("#") {
                self.next()?;
            }
            self.simple()
        }

        fn simple(&mut self) -> Res {
            let t = self.cur();
            match t.k {
                K::Number | K::Str => self.next(),
                K::Name if matches!(t.text, "nil" | "true" | "false") => self.next(),
                K::Sym if t.text == "..." => {
                    Err(self.err("cannot use '...' outside a vararg function"))
                }
                K::Sym if t.text == "{" => self.table(),
                // A function body is a block; too rare in templates to check.
                K::Name if t.text == "function" => Err(String::new()),
                _ => self.primary(),
            }
        }

        fn primary(&mut self) -> Res {
            if self.is("(") {
                let line = self.cur().line;
                self.next()?;
                self.expr()?;
                self.close(")", "(", line)?;
            } else if self.is_name() {
                self.next()?;
            } else {
                return Err(self.err("unexpected symbol"));
            }
            loop {
                if self.is(".") {
                    self.next()?;
                    self.name()?;
                } else if self.is("[") {
                    self.next()?;
                    self.expr()?;
                    self.check("]")?;
                } else if self.is(":") {
                    self.next()?;
                    self.name()?;
                    self.args()?;
                } else if self.is("(") || self.is("{") || self.cur().k == K::Str {
                    self.args()?;
                } else {
                    return Ok(());
                }
            }
        }

        fn args(&mut self) -> Res {
            if self.is("(") {
                let line = self.cur().line;
                if self.pos > 0 && self.toks[self.pos - 1].line != line {
                    return Err(self.err("ambiguous syntax (function call x new statement)"));
                }
                self.next()?;
                if !self.is(")") {
                    self.expr()?;
                    while self.is(",") {
                        self.next()?;
                        self.expr()?;
                    }
                }
                self.close(")", "(", line)
            } else if self.is("{") {
                self.table()
            } else if self.cur().k == K::Str {
                self.next()
            } else {
                Err(self.err("function arguments expected"))
            }
        }

        fn table(&mut self) -> Res {
            let line = self.cur().line;
            self.check("{")?;
            while !self.is("}") {
                if self.is("[") {
                    self.next()?;
                    self.expr()?;
                    self.check("]")?;
                    self.check("=")?;
                } else if self.is_name()
                    && self.toks.get(self.pos + 1).is_some_and(|t| t.k == K::Sym && t.text == "=")
                {
                    self.next()?;
                    self.next()?;
                }
                self.expr()?;
                if self.is(",") || self.is(";") {
                    self.next()?;
                } else {
                    break;
                }
            }
            self.close("}", "{", line)
        }
    }

    /// Parses `((inner) or '')` the way the generated chunk holds it.
    fn check_expr(inner: &str, line: usize) -> Result<(), String> {
        let code = format!("(({inner}) or '')");
        let mut p = Parser {
            toks: lex(&code, line),
            pos: 0,
        };
        if let K::Bad(m) = p.cur().k {
            return Err(p.err(m));
        }
        match p.expr() {
            // `function`: accepted unchecked.
            Err(e) if e.is_empty() => Ok(()),
            other => other,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::check;

        #[test]
        fn templates() {
            for ok in [
                "plain",
                "$(headers.host)",
                "$(query_params[\"a\"] or 'x')",
                "a $(uri_captures.id) b $(headers['x-y'])",
                "$(x:lower())",
                "$(f{a=1, [2]=3; 'z'})",
                "$(-1 + #t * 2 ^ 3 .. 'a' == 0x1F)",
                "$(not a and b or c)",
                "$(a",
                "$(function() return 1 end)",
            ] {
                assert_eq!(check(ok), Ok(()), "{ok}");
            }
            let err = |v| check(v).unwrap_err();
            assert_eq!(err("$(a b)"), "[string \"TMP\"]:4: ')' expected near 'b'");
            assert_eq!(err("$()"), "[string \"TMP\"]:4: unexpected symbol near ')'");
            assert_eq!(err("x\n$(a +)"), "[string \"TMP\"]:5: unexpected symbol near ')'");
            assert_eq!(err("$(a) $(b.)"), "[string \"TMP\"]:6: '<name>' expected near ')'");
            assert_eq!(err("$('x)"), "[string \"TMP\"]:4: unfinished string near '')'");
            assert_eq!(err("$(...)"), "[string \"TMP\"]:4: cannot use '...' outside a vararg function near '...'");
            assert_eq!(err("$(a @ b)"), "[string \"TMP\"]:4: ')' expected near '@'");
        }
    }
}
