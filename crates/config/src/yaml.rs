//! libyaml-compatible pre-validation of a nutcracker configuration.
//!
//! nutcracker (src/nc_conf.c) reads the file four times with libyaml before it
//! looks at a single directive: it loads every document (rejecting anything
//! libyaml cannot load and any stream that is not exactly one document), scans
//! the raw tokens (rejecting flow collections, anchors, aliases, tags,
//! directives and `---`/`...`), walks the events checking the two-level
//! `pool: {key: value, list: [...]}` shape, and finally parses. We reproduce
//! those passes on top of yaml-rust2's scanner and parser, which are a port of
//! libyaml's, so the first reported problem is the one nutcracker reports.
//!
//! libyaml error classes are mapped onto nutcracker's `err N` numbers:
//! 2 reader (bad UTF-8, control characters), 3 scanner, 4 parser,
//! 5 composer (undefined alias, duplicate anchor).

use std::collections::HashSet;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Scanner, Token, TokenType};
use yaml_rust2::ScanError;

use crate::error::LogLine;

/// nutcracker's CONF_ROOT_DEPTH / CONF_MAX_DEPTH.
const ROOT_DEPTH: i32 = 1;
const MAX_DEPTH: i32 = 2;

/// libyaml `yaml_error_type_t` values nutcracker prints as `err N`.
const READER_ERROR: u32 = 2;
const SCANNER_ERROR: u32 = 3;
const PARSER_ERROR: u32 = 4;
const COMPOSER_ERROR: u32 = 5;

/// The events of a stream that passed pre-validation, reduced to what the
/// directive parser needs (anchors, aliases and tags were rejected already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ev {
    MappingStart,
    MappingEnd,
    SequenceStart,
    SequenceEnd,
    Scalar(String),
}

/// Decodes the file bytes the way libyaml's reader does, or returns the
/// reader-error log line.
fn decode(bytes: &[u8]) -> Result<String, LogLine> {
    let reader_error = || load_failure(READER_ERROR);
    let text = if let Some(rest) = bytes.strip_prefix(&[0xff, 0xfe]) {
        decode_utf16(rest, u16::from_le_bytes).ok_or_else(reader_error)?
    } else if let Some(rest) = bytes.strip_prefix(&[0xfe, 0xff]) {
        decode_utf16(rest, u16::from_be_bytes).ok_or_else(reader_error)?
    } else {
        let rest = bytes.strip_prefix(&[0xef, 0xbb, 0xbf]).unwrap_or(bytes);
        std::str::from_utf8(rest)
            .map_err(|_| reader_error())?
            .to_owned()
    };
    // libyaml's reader rejects every non-printable character up front.
    if !text.chars().all(is_yaml_printable) {
        return Err(reader_error());
    }
    Ok(normalize_breaks(&text))
}

fn decode_utf16(bytes: &[u8], conv: fn([u8; 2]) -> u16) -> Option<String> {
    if bytes.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = bytes.chunks_exact(2).map(|c| conv([c[0], c[1]])).collect();
    String::from_utf16(&units).ok()
}

fn is_yaml_printable(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r' | '\u{20}'..='\u{7e}' | '\u{85}'
        | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..='\u{10ffff}')
}

/// libyaml (YAML 1.1) treats CR, CRLF, NEL, LS and PS as line breaks; yaml-rust2
/// (YAML 1.2) only LF and CR(LF). Folding them all to LF first gives both the
/// same structure (libyaml also turns CR/CRLF/NEL into LF inside scalars).
fn normalize_breaks(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push('\n');
            }
            '\u{85}' | '\u{2028}' | '\u{2029}' => out.push('\n'),
            c => out.push(c),
        }
    }
    out
}

fn load_failure(code: u32) -> LogLine {
    LogLine::conf(
        828,
        format!("conf: failed (err {code}) to get the next yaml document"),
    )
}

/// The scanner run alone to the end.
struct Scan {
    /// Tokens with their character offsets.
    tokens: Vec<(usize, TokenType)>,
    /// The scanner error that stopped it, if any.
    error: Option<ScanError>,
    /// Offset where libyaml's scanner fails but yaml-rust2's does not: a
    /// directive other than %YAML/%TAG (yaml-rust2 yields an empty tag
    /// directive and carries on), or a tab libyaml does not accept.
    libyaml_fails_at: Option<usize>,
}

fn scan_all(text: &str) -> Scan {
    let mut scanner = Scanner::new(text.chars());
    let mut scan = Scan {
        tokens: Vec::new(),
        error: None,
        libyaml_fails_at: None,
    };
    loop {
        match scanner.next_token() {
            Ok(Some(tok)) => {
                let pos = tok.0.index();
                if matches!(&tok.1, TokenType::TagDirective(handle, _) if handle.is_empty()) {
                    scan.libyaml_fails_at = Some(pos);
                    return scan;
                }
                let end = tok.1 == TokenType::StreamEnd;
                scan.tokens.push((pos, tok.1));
                if end {
                    return scan;
                }
            }
            Ok(None) => return scan,
            Err(e) => {
                scan.error = Some(e);
                return scan;
            }
        }
    }
}

/// yaml-rust2 implements YAML 1.2 and rejects a few things libyaml (YAML 1.1)
/// accepts, none of which can change a value:
/// - a tab right after a simple key's `:` (`hash:\tmd5`) — separation;
/// - tabs, or too little indentation, at the start of a quoted scalar's
///   continuation line — continuation indentation is discarded;
/// - a `#` comment not preceded by a blank (after a quoted scalar).
///
/// Rewrite those spots (tabs to spaces, extra indentation, a space before
/// `#`) and rescan until the scanner stops complaining about them.
fn fix_for_yaml_rust2(mut text: String) -> String {
    for _ in 0..64 {
        let Some(err) = scan_all(&text).error else {
            break;
        };
        let mut chars: Vec<char> = text.chars().collect();
        let at = err.marker().index().min(chars.len());
        let line_start = |i: usize| {
            chars[..i]
                .iter()
                .rposition(|&c| c == '\n')
                .map_or(0, |p| p + 1)
        };
        match err.info() {
            "':' must be followed by a valid YAML whitespace" => {
                let mut start = at;
                while start > 0 && matches!(chars[start - 1], ' ' | '\t') {
                    start -= 1;
                }
                // A ':' with only blanks before it on its line follows a
                // complex key (`? k`), where libyaml rejects the tab as well.
                let ls = line_start(start);
                let simple_key = start > 0
                    && chars[start - 1] == ':'
                    && chars[ls..start - 1]
                        .iter()
                        .any(|c| !matches!(c, ' ' | '\t'));
                if !simple_key || !chars[start..at].contains(&'\t') {
                    break;
                }
                chars[start..at].fill(' ');
            }
            "tab cannot be used as indentation" => {
                let ls = line_start(at);
                let mut end = at;
                while end < chars.len() && matches!(chars[end], ' ' | '\t') {
                    end += 1;
                }
                if !chars[ls..end].contains(&'\t') {
                    break;
                }
                chars[ls..end].fill(' ');
            }
            "invalid indentation in quoted scalar" => {
                // `at` is the opening quote; indent every continuation line
                // past it. libyaml only rejects document markers there.
                let Some(end) = quoted_end(&chars, at) else {
                    break;
                };
                let pad = at - line_start(at) + 1;
                let mut fixed: Vec<char> = Vec::with_capacity(chars.len() + 64);
                for (i, &c) in chars.iter().enumerate() {
                    if i > at && i <= end && i > 0 && chars[i - 1] == '\n' {
                        let rest: String = chars[i..chars.len().min(i + 4)].iter().collect();
                        if rest.starts_with("---") || rest.starts_with("...") {
                            return text;
                        }
                        fixed.extend(std::iter::repeat_n(' ', pad));
                    }
                    fixed.push(c);
                }
                chars = fixed;
            }
            "comments must be separated from other tokens by whitespace" => {
                if chars.get(at) != Some(&'#') {
                    break;
                }
                chars.insert(at, ' ');
            }
            _ => break,
        }
        text = chars.into_iter().collect();
    }
    text
}

/// Offset of the closing quote of the quoted scalar opening at `start`.
fn quoted_end(chars: &[char], start: usize) -> Option<usize> {
    let quote = *chars.get(start)?;
    let mut j = start + 1;
    while j < chars.len() {
        match chars[j] {
            '\'' if quote == '\'' => {
                if chars.get(j + 1) == Some(&'\'') {
                    j += 2;
                    continue;
                }
                return Some(j);
            }
            '"' if quote == '"' => return Some(j),
            '\\' if quote == '"' => j += 2,
            _ => j += 1,
        }
    }
    None
}

/// Offset of the `|`/`>` header of the block scalar token `i`: yaml-rust2
/// marks the token at its first content character instead.
fn block_header(chars: &[char], scan: &Scan, i: usize) -> usize {
    let from = i
        .checked_sub(1)
        .and_then(|p| scan.tokens.get(p))
        .map_or(0, |(p, _)| *p)
        .min(chars.len());
    chars[from..]
        .iter()
        .position(|&c| c == '|' || c == '>')
        .map_or(scan.tokens[i].0, |o| from + o)
}

/// The first tab libyaml's scanner rejects but yaml-rust2 lets through, as a
/// character offset. In block context libyaml only skips a tab as separation
/// when a simple key is not allowed, so it rejects a tab
/// - anywhere in the leading blanks of a line (blank and comment lines too),
///   unless the line continues a quoted or block scalar, or a plain scalar
///   (where both libraries apply the same indentation rule);
/// - in the blanks right after `-`, a complex-key `?` or its `:`.
fn first_rejected_tab(chars: &[char], scan: &Scan) -> Option<usize> {
    use yaml_rust2::scanner::TScalarStyle;

    let limit = scan
        .error
        .as_ref()
        .map_or(chars.len(), |e| e.marker().index().min(chars.len()));
    let token_starts: HashSet<usize> = scan.tokens.iter().map(|(p, _)| *p).collect();
    let is_blank = |c: char| c == ' ' || c == '\t';

    // Character ranges inside quoted and block scalars.
    let mut inside: Vec<(usize, usize)> = Vec::new();
    for (i, (pos, tok)) in scan.tokens.iter().enumerate() {
        let TokenType::Scalar(style, _) = tok else {
            continue;
        };
        let end = match style {
            TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => {
                quoted_end(chars, *pos).unwrap_or(chars.len())
            }
            TScalarStyle::Literal | TScalarStyle::Folded => {
                let end = scan
                    .tokens
                    .get(i + 1)
                    .map_or(chars.len(), |(next, _)| next.saturating_sub(1));
                inside.push((block_header(chars, scan, i), end));
                continue;
            }
            _ => continue,
        };
        inside.push((*pos, end));
    }
    let in_scalar = |at: usize| inside.iter().any(|&(s, e)| s < at && at <= e);

    let mut first: Option<usize> = None;
    let mut note = |at: usize| {
        if at < limit && first.is_none_or(|f| at < f) {
            first = Some(at);
        }
    };

    // Block scalars: libyaml wants spaces for indentation. Until the first
    // content line fixes the indentation any tab there is an error, and after
    // that a tab before the indentation column is one.
    for (i, (_, tok)) in scan.tokens.iter().enumerate() {
        if !matches!(
            tok,
            TokenType::Scalar(TScalarStyle::Literal | TScalarStyle::Folded, _)
        ) {
            continue;
        }
        let end = scan
            .tokens
            .get(i + 1)
            .map_or(chars.len(), |(next, _)| *next);
        let start = block_header(chars, scan, i);
        let Some(header_end) = chars[start..end].iter().position(|&c| c == '\n') else {
            continue;
        };
        let header = &chars[start..start + header_end];
        if header
            .iter()
            .take_while(|&&c| c != '#')
            .any(char::is_ascii_digit)
        {
            continue; // explicit indentation: not modelled
        }
        let mut indent: Option<usize> = None;
        let mut ls = start + header_end + 1;
        while ls < end {
            let spaces = chars[ls..end].iter().take_while(|&&c| c == ' ').count();
            let at = ls + spaces;
            match chars.get(at) {
                Some('\t') if indent.is_none_or(|n| spaces < n) => note(at),
                Some('\n') | None => {}
                Some(_) if indent.is_none() => indent = Some(spaces),
                Some(_) => {}
            }
            ls = chars[ls..end]
                .iter()
                .position(|&c| c == '\n')
                .map_or(end, |i| ls + i + 1);
        }
    }

    // Leading blanks of every line.
    let mut line_start = 0;
    while line_start < chars.len() {
        let line_end = chars[line_start..]
            .iter()
            .position(|&c| c == '\n')
            .map_or(chars.len(), |i| line_start + i);
        let content = chars[line_start..line_end]
            .iter()
            .position(|&c| !is_blank(c))
            .map_or(line_end, |i| line_start + i);
        let continues_plain =
            content < line_end && chars[content] != '#' && !token_starts.contains(&content);
        if !in_scalar(line_start) && !continues_plain {
            if let Some(t) = (line_start..content).find(|&i| chars[i] == '\t') {
                note(t);
            }
        }
        line_start = line_end + 1;
    }

    // Blanks after block indicators.
    for (pos, tok) in &scan.tokens {
        let at = *pos;
        let indicator = match tok {
            // yaml-rust2 marks a block entry after the blanks that follow '-'.
            TokenType::BlockEntry => {
                let mut dash = at;
                while dash > 0 && is_blank(chars[dash - 1]) {
                    dash -= 1;
                }
                if dash > 0 && chars[dash - 1] == '-' {
                    if let Some(t) = (dash..at).find(|&i| chars[i] == '\t') {
                        note(t);
                    }
                }
                false
            }
            TokenType::Key => {
                chars.get(at) == Some(&'?') && chars.get(at + 1).is_none_or(|c| c.is_whitespace())
            }
            TokenType::Value => {
                let ls = chars[..at]
                    .iter()
                    .rposition(|&c| c == '\n')
                    .map_or(0, |i| i + 1);
                chars.get(at) == Some(&':') && chars[ls..at].iter().all(|&c| is_blank(c))
            }
            _ => false,
        };
        if !indicator {
            continue;
        }
        let mut j = at + 1;
        while j < chars.len() && is_blank(chars[j]) {
            if chars[j] == '\t' {
                note(j);
                break;
            }
            j += 1;
        }
    }
    first
}

/// Parses every event of the stream, or the error that stopped the parser.
fn parse_all(text: &str) -> Result<Vec<Event>, ScanError> {
    let mut parser = Parser::new_from_str(text);
    let mut events = Vec::new();
    loop {
        let (ev, _) = parser.next_token()?;
        let end = ev == Event::StreamEnd;
        events.push(ev);
        if end {
            return Ok(events);
        }
    }
}

/// Position of the first anchor that repeats an earlier one in the same
/// document: libyaml's composer rejects that, yaml-rust2 silently rebinds it.
fn first_duplicate_anchor(tokens: &[(usize, TokenType)]) -> Option<usize> {
    let mut seen: HashSet<&str> = HashSet::new();
    for (pos, tok) in tokens {
        match tok {
            TokenType::DocumentStart | TokenType::DocumentEnd => seen.clear(),
            TokenType::Anchor(name) if !seen.insert(name.as_str()) => return Some(*pos),
            _ => {}
        }
    }
    None
}

/// yaml-rust2 scanner errors for input libyaml's scanner passes on and its
/// parser then rejects (YAML 1.2 strictness checks done while scanning).
const PARSER_LEVEL_SCAN_ERRORS: &[&str] = &[
    "illegal placement of ':' indicator",
    "invalid content after document end marker",
];

/// Whether libyaml's scanner fails on the token starting at `at`, which
/// follows a quoted scalar on the same line. If it does not, libyaml's parser
/// rejects the token instead ("did not find expected key").
fn trailing_token_fails(chars: &[char], at: usize) -> bool {
    let Some(&c) = chars.get(at) else {
        return false;
    };
    // A quoted scalar starting a line at its block's indentation is a
    // required simple key: libyaml scans on for its `:` and fails in the
    // scanner ("could not find expected ':'") before the parser sees this.
    if let Some(open) = opening_quote(chars, at) {
        let ls = chars[..open]
            .iter()
            .rposition(|&c| c == '\n')
            .map_or(0, |i| i + 1);
        if chars[ls..open].iter().all(|&c| c == ' ') && at_block_indent(chars, ls, open - ls) {
            return true;
        }
    }
    // After a scalar a simple key is not allowed, so block indicators fail.
    if matches!(c, '?' | '-') && chars.get(at + 1).is_none_or(|n| n.is_whitespace()) {
        return true;
    }
    if matches!(c, '"' | '\'') {
        return quoted_end(chars, at).is_none();
    }
    // Scan just that one token, with simple keys disallowed as they are after
    // a scalar (a document start marker does that), so nothing past it is
    // looked at.
    let line_end = chars[at..]
        .iter()
        .position(|&c| c == '\n')
        .map_or(chars.len(), |i| at + i);
    let probe: String = "--- "
        .chars()
        .chain(chars[at..line_end].iter().copied())
        .collect();
    let mut scanner = Scanner::new(probe.chars());
    for _ in 0..3 {
        match scanner.next_token() {
            Ok(Some(Token(_, TokenType::StreamStart(_) | TokenType::DocumentStart))) => {}
            Ok(_) => return false,
            Err(_) => return true,
        }
    }
    false
}

/// Whether a block collection is open at `column` for the line starting at
/// `line_start`: an earlier content line starts at that column with no line
/// starting further left in between (libyaml's indentation stack).
fn at_block_indent(chars: &[char], line_start: usize, column: usize) -> bool {
    let mut end = line_start;
    while end > 0 {
        let ls = chars[..end - 1]
            .iter()
            .rposition(|&c| c == '\n')
            .map_or(0, |i| i + 1);
        let line = &chars[ls..end - 1];
        end = ls;
        let Some(col) = line.iter().position(|&c| c != ' ') else {
            continue;
        };
        if line[col] == '#' {
            continue;
        }
        if col <= column {
            return col == column;
        }
    }
    column == 0
}

/// Offset of the opening quote of the quoted scalar that ends just before
/// `at` (blanks allowed in between).
fn opening_quote(chars: &[char], at: usize) -> Option<usize> {
    let mut close = at;
    while close > 0 && matches!(chars[close - 1], ' ' | '\t') {
        close -= 1;
    }
    let close = close.checked_sub(1)?;
    let quote = chars[close];
    if quote != '"' && quote != '\'' {
        return None;
    }
    let mut j = close;
    while j > 0 {
        j -= 1;
        if chars[j] != quote {
            continue;
        }
        let escaped = if quote == '"' {
            chars[..j].iter().rev().take_while(|&&c| c == '\\').count() % 2 == 1
        } else {
            false
        };
        if !escaped {
            return Some(j);
        }
    }
    None
}

/// libyaml's error class for a yaml-rust2 parse error.
fn classify(e: &ScanError, scan: &Scan, chars: &[char]) -> u32 {
    // The parser pulls tokens lazily, so an error identical to the one the
    // scanner hits on its own came from the scanner; anything else is the
    // parser's (or, for aliases, libyaml's composer's).
    if scan.error.as_ref() == Some(e) {
        let parser_level = PARSER_LEVEL_SCAN_ERRORS.contains(&e.info())
            || (e.info() == "invalid trailing content after double-quoted scalar"
                && !trailing_token_fails(chars, e.marker().index()));
        if parser_level {
            PARSER_ERROR
        } else {
            SCANNER_ERROR
        }
    } else if e.info().contains("unknown anchor") {
        COMPOSER_ERROR
    } else {
        PARSER_ERROR
    }
}

/// Offset of the first `:` with no key before it in its block mapping:
/// YAML 1.2 (yaml-rust2) reads an empty key there, libyaml's parser fails
/// with "did not find expected key". Flow collections are not followed.
fn first_keyless_value(tokens: &[(usize, TokenType)]) -> Option<usize> {
    // One entry per open block collection: Some(key pending) for mappings.
    let mut stack: Vec<Option<bool>> = Vec::new();
    for (pos, tok) in tokens {
        match tok {
            TokenType::BlockMappingStart => stack.push(Some(false)),
            TokenType::BlockSequenceStart => stack.push(None),
            TokenType::BlockEnd => {
                stack.pop();
            }
            TokenType::Key => {
                if let Some(Some(pending)) = stack.last_mut() {
                    *pending = true;
                }
            }
            TokenType::Value => {
                if let Some(Some(pending)) = stack.last_mut() {
                    if !*pending {
                        return Some(*pos);
                    }
                    *pending = false;
                }
            }
            TokenType::FlowSequenceStart | TokenType::FlowMappingStart => return None,
            _ => {}
        }
    }
    None
}

/// Offset of the first anchor or alias whose name libyaml's scanner rejects:
/// libyaml allows only `[0-9A-Za-z_-]`, then a blank or one of ``?:,]}%@` ``;
/// yaml-rust2 takes any non-blank, non-flow characters.
fn first_bad_anchor_name(tokens: &[(usize, TokenType)]) -> Option<usize> {
    let ok = |name: &str| {
        let alnum = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        match name.char_indices().find(|&(_, c)| !alnum(c)) {
            None => !name.is_empty(),
            Some((i, c)) => i > 0 && "?:,]}%@`".contains(c),
        }
    };
    tokens.iter().find_map(|(pos, tok)| match tok {
        TokenType::Anchor(name) | TokenType::Alias(name) if !ok(name) => Some(*pos),
        _ => None,
    })
}

/// conf_validate_document: the stream must load and hold exactly one document.
///
/// libyaml stops at the first problem in the stream, so of all the ways it
/// would fail we report the earliest (scanner before parser at one spot).
fn validate_document(
    fname: &str,
    events: &Result<Vec<Event>, ScanError>,
    scan: &Scan,
    chars: &[char],
) -> Result<(), LogLine> {
    // libyaml only skips stray `...` after a document; before the first one
    // it is "did not find expected node content".
    if matches!(scan.tokens.get(1), Some((_, TokenType::DocumentEnd))) {
        return Err(load_failure(PARSER_ERROR));
    }
    let mut first: Option<(usize, u32)> = None;
    let mut consider = |pos: usize, code: u32| {
        if first.is_none_or(|f| (pos, code) < f) {
            first = Some((pos, code));
        }
    };
    if let Some(pos) = scan.libyaml_fails_at {
        consider(pos, SCANNER_ERROR);
    }
    if let Some(pos) = first_bad_anchor_name(&scan.tokens) {
        consider(pos, SCANNER_ERROR);
    }
    if let Some(pos) = first_keyless_value(&scan.tokens) {
        consider(pos, PARSER_ERROR);
    }
    if let Some(pos) = first_duplicate_anchor(&scan.tokens) {
        consider(pos, COMPOSER_ERROR);
    }
    let events = match events {
        Ok(events) => events,
        Err(e) => {
            consider(e.marker().index(), classify(e, scan, chars));
            &Vec::new()
        }
    };
    if let Some((_, code)) = first {
        return Err(load_failure(code));
    }
    let count = events
        .iter()
        .filter(|e| **e == Event::DocumentStart)
        .count();
    if count != 1 {
        return Err(LogLine::conf(
            847,
            format!("conf: '{fname}' must contain only 1 document; found {count} documents"),
        ));
    }
    Ok(())
}

/// conf_validate_tokens: the first disallowed token, with libyaml's token number.
fn validate_tokens(tokens: &[(usize, TokenType)]) -> Result<(), LogLine> {
    for (_, tok) in tokens {
        let (line, what, num) = match tok {
            TokenType::VersionDirective(..) => (884, "version directive", 3),
            TokenType::TagDirective(..) => (889, "tag directive", 4),
            TokenType::DocumentStart => (894, "document start", 5),
            TokenType::DocumentEnd => (899, "document end", 6),
            TokenType::FlowSequenceStart => (904, "flow sequence start", 10),
            TokenType::FlowSequenceEnd => (909, "flow sequence end", 11),
            TokenType::FlowMappingStart => (914, "flow mapping start", 12),
            TokenType::FlowMappingEnd => (919, "flow mapping end", 13),
            TokenType::FlowEntry => (924, "flow entry", 15),
            TokenType::Alias(_) => (929, "alias", 18),
            TokenType::Anchor(_) => (934, "anchor", 19),
            TokenType::Tag(..) => (939, "tag", 20),
            TokenType::StreamEnd => return Ok(()),
            _ => continue,
        };
        return Err(LogLine::conf(
            line,
            format!("conf: {what} token ({num}) is disallowed"),
        ));
    }
    Ok(())
}

/// conf_validate_structure: pools are `name: {key: value ..., list: [...]}`
/// with exactly one block sequence per pool.
fn validate_structure(fname: &str, events: &[Event]) -> Result<(), LogLine> {
    let mut depth: i32 = 0;
    let mut seq = false;
    let mut count = [0u32; (MAX_DEPTH + 2) as usize];
    let err = |line: u32, msg: String| Err(LogLine::conf(line, msg));
    for ev in events {
        // Parser events are balanced, so depth stays within 0..=MAX_DEPTH.
        let d = depth.clamp(0, MAX_DEPTH) as usize;
        match ev {
            Event::MappingStart(..) => {
                if depth == ROOT_DEPTH && count[d] != 1 {
                    return err(
                        1043,
                        format!("conf: '{fname}' has more than one \"key:value\" at depth {depth}"),
                    );
                } else if depth >= MAX_DEPTH {
                    return err(
                        1047,
                        format!("conf: '{fname}' has a depth greater than {MAX_DEPTH}"),
                    );
                }
                depth += 1;
            }
            Event::MappingEnd => {
                if depth == MAX_DEPTH {
                    if seq {
                        seq = false;
                    } else {
                        return err(
                            1059,
                            format!("conf: '{fname}' missing sequence directive at depth {depth}"),
                        );
                    }
                }
                depth -= 1;
                count[depth.max(0) as usize] = 0;
            }
            Event::SequenceStart(..) => {
                if seq {
                    return err(
                        1070,
                        format!("conf: '{fname}' has more than one sequence directive"),
                    );
                } else if depth != MAX_DEPTH {
                    return err(
                        1074,
                        format!(
                            "conf: '{fname}' has sequence at depth {depth} instead of {MAX_DEPTH}"
                        ),
                    );
                } else if count[d] != 1 {
                    return err(
                        1078,
                        format!("conf: '{fname}' has invalid \"key:value\" at depth {depth}"),
                    );
                }
                seq = true;
            }
            Event::SequenceEnd => count[d] = 0,
            Event::Scalar(..) | Event::Alias(..) => {
                if depth == 0 {
                    return err(
                        1092,
                        format!("conf: '{fname}' has invalid empty \"key:\" at depth {depth}"),
                    );
                } else if depth == ROOT_DEPTH && count[d] != 0 {
                    return err(
                        1096,
                        format!("conf: '{fname}' has invalid mapping \"key:\" at depth {depth}"),
                    );
                } else if depth == MAX_DEPTH && count[d] == 2 {
                    // a complete "key: value" pair: start counting the next one
                    count[d] = 0;
                }
                count[d] += 1;
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
    }
    Ok(())
}

/// Runs nutcracker's three pre-validation passes over the raw file bytes and
/// returns the events of the single top-level mapping (its start and end
/// excluded) for the directive parser.
pub(crate) fn pre_validate(fname: &str, bytes: &[u8]) -> Result<Vec<Ev>, LogLine> {
    let text = fix_for_yaml_rust2(decode(bytes)?);
    let mut scan = scan_all(&text);
    let chars: Vec<char> = text.chars().collect();
    if let Some(tab) = first_rejected_tab(&chars, &scan) {
        scan.libyaml_fails_at = Some(scan.libyaml_fails_at.map_or(tab, |d| d.min(tab)));
    }
    let events = parse_all(&text);
    validate_document(fname, &events, &scan, &chars)?;
    let events = events.unwrap_or_default();
    validate_tokens(&scan.tokens)?;
    validate_structure(fname, &events)?;

    // conf_begin_parse skips to the first mapping start; conf_end_parse
    // consumes what follows the top-level mapping end.
    let mut out = Vec::with_capacity(events.len());
    let mut depth = 0usize;
    for ev in events {
        match ev {
            Event::MappingStart(..) => {
                if depth > 0 {
                    out.push(Ev::MappingStart);
                }
                depth += 1;
            }
            Event::MappingEnd => {
                depth = depth.saturating_sub(1);
                if depth > 0 {
                    out.push(Ev::MappingEnd);
                }
            }
            Event::SequenceStart(..) => out.push(Ev::SequenceStart),
            Event::SequenceEnd => out.push(Ev::SequenceEnd),
            Event::Scalar(value, ..) => out.push(Ev::Scalar(value)),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> String {
        match pre_validate("f.yml", text.as_bytes()) {
            Ok(_) => "ok".to_owned(),
            Err(l) => format!("{}:{} {}", l.file, l.line, l.message),
        }
    }

    #[test]
    fn error_classes() {
        assert_eq!(
            msg("a:\n  b: \"x\n"),
            "nc_conf.c:828 conf: failed (err 3) to get the next yaml document"
        );
        assert_eq!(
            msg("a:\n  b: c\n  - d\n"),
            "nc_conf.c:828 conf: failed (err 4) to get the next yaml document"
        );
        assert_eq!(
            msg("a:\n  b: *x\n"),
            "nc_conf.c:828 conf: failed (err 5) to get the next yaml document"
        );
        assert_eq!(
            msg("a:\n  b: &x 1\n  c: &x 2\n"),
            "nc_conf.c:828 conf: failed (err 5) to get the next yaml document"
        );
        assert_eq!(
            msg("a:\n  b: \u{1}\n"),
            "nc_conf.c:828 conf: failed (err 2) to get the next yaml document"
        );
        let bad = b"a:\n  b: \xff\n";
        assert_eq!(
            pre_validate("f", bad).unwrap_err().message,
            "conf: failed (err 2) to get the next yaml document"
        );
    }

    #[test]
    fn documents() {
        assert_eq!(
            msg(""),
            "nc_conf.c:847 conf: 'f.yml' must contain only 1 document; found 0 documents"
        );
        assert_eq!(
            msg("a: 1\n---\nb: 2\n"),
            "nc_conf.c:847 conf: 'f.yml' must contain only 1 document; found 2 documents"
        );
    }

    #[test]
    fn tokens() {
        assert_eq!(
            msg("---\na:\n  s:\n   - x\n"),
            "nc_conf.c:894 conf: document start token (5) is disallowed"
        );
        assert_eq!(
            msg("a:\n  s: [x]\n"),
            "nc_conf.c:904 conf: flow sequence start token (10) is disallowed"
        );
        assert_eq!(
            msg("a: {b: c}\n"),
            "nc_conf.c:914 conf: flow mapping start token (12) is disallowed"
        );
        assert_eq!(
            msg("a:\n  b: &x c\n"),
            "nc_conf.c:934 conf: anchor token (19) is disallowed"
        );
        assert_eq!(
            msg("a:\n  b: !!str c\n"),
            "nc_conf.c:939 conf: tag token (20) is disallowed"
        );
        assert_eq!(
            msg("%YAML 1.1\n---\na: b\n"),
            "nc_conf.c:884 conf: version directive token (3) is disallowed"
        );
    }

    #[test]
    fn structure() {
        assert_eq!(
            msg("hello\n"),
            "nc_conf.c:1092 conf: 'f.yml' has invalid empty \"key:\" at depth 0"
        );
        assert_eq!(
            msg("a: x\n"),
            "nc_conf.c:1096 conf: 'f.yml' has invalid mapping \"key:\" at depth 1"
        );
        assert_eq!(
            msg("- a\n"),
            "nc_conf.c:1074 conf: 'f.yml' has sequence at depth 0 instead of 2"
        );
        assert_eq!(
            msg("a:\n  b:\n    c: d\n"),
            "nc_conf.c:1047 conf: 'f.yml' has a depth greater than 2"
        );
        assert_eq!(
            msg("a:\n  b: c\n"),
            "nc_conf.c:1059 conf: 'f.yml' missing sequence directive at depth 2"
        );
        assert_eq!(
            msg("a:\n  b:\n   - c\n  d:\n   - e\n"),
            "nc_conf.c:1070 conf: 'f.yml' has more than one sequence directive"
        );
        assert_eq!(msg("a:\n  b:\n   - c\n"), "ok");
    }

    #[test]
    fn line_breaks_and_bom_are_accepted() {
        assert_eq!(msg("\u{feff}a:\r\n  b:\r\n   - c\r\n"), "ok");
        assert_eq!(msg("a:\r  b:\r   - c\r"), "ok");
        assert_eq!(msg("a:\u{85}  b:\u{85}   - c\u{85}"), "ok");
    }
}
