//! nginx's configuration syntax: directives (`name arg…;`) and blocks
//! (`name arg… { … }`), `#` comments, single- and double-quoted arguments. Sans-IO:
//! text in, a tree out, or where it is malformed.

/// One directive, with its block if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub block: Option<Vec<Directive>>,
    /// Where it starts (1-based), for messages.
    pub line: usize,
}

impl Directive {
    /// The first argument, or "".
    pub fn arg(&self) -> &str {
        self.args.first().map_or("", String::as_str)
    }

    pub fn children(&self) -> &[Directive] {
        self.block.as_deref().unwrap_or(&[])
    }
}

/// Where the text is not nginx syntax.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Open,
    Close,
    End,
}

fn tokens(text: &str) -> Result<Vec<(Token, usize)>, SyntaxError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(&c) = chars.peek() {
        match c {
            '\n' => {
                line += 1;
                chars.next();
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            '{' | '}' | ';' => {
                chars.next();
                let t = match c {
                    '{' => Token::Open,
                    '}' => Token::Close,
                    _ => Token::End,
                };
                out.push((t, line));
            }
            '"' | '\'' => {
                let start = line;
                chars.next();
                let mut word = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(SyntaxError {
                                line: start,
                                message: format!("a {c}quoted{c} argument is never closed"),
                            })
                        }
                        Some('\\') => {
                            if let Some(n) = chars.next() {
                                word.push(n);
                            }
                        }
                        Some(q) if q == c => break,
                        Some(other) => {
                            if other == '\n' {
                                line += 1;
                            }
                            word.push(other);
                        }
                    }
                }
                out.push((Token::Word(word), start));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, ';' | '{' | '}') {
                        // `${var}` keeps its braces.
                        if c == '{' && word.ends_with('$') {
                            word.push(c);
                            chars.next();
                            continue;
                        }
                        if c == '}' && word.contains("${") && !word.ends_with('}') {
                            word.push(c);
                            chars.next();
                            continue;
                        }
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push((Token::Word(word), line));
            }
        }
    }
    Ok(out)
}

/// The directives of a whole file.
pub fn parse(text: &str) -> Result<Vec<Directive>, SyntaxError> {
    let tokens = tokens(text)?;
    let mut at = 0;
    let list = block(&tokens, &mut at, None)?;
    Ok(list)
}

/// Blocks nested deeper than this are refused (nginx's own files go a few deep).
const MAX_DEPTH: usize = 64;

fn block(
    tokens: &[(Token, usize)],
    at: &mut usize,
    opened: Option<usize>,
) -> Result<Vec<Directive>, SyntaxError> {
    block_at(tokens, at, opened, 0)
}

fn block_at(
    tokens: &[(Token, usize)],
    at: &mut usize,
    opened: Option<usize>,
    depth: usize,
) -> Result<Vec<Directive>, SyntaxError> {
    if depth > MAX_DEPTH {
        return Err(SyntaxError {
            line: opened.unwrap_or(1),
            message: format!("blocks nested more than {MAX_DEPTH} deep"),
        });
    }
    let mut list = Vec::new();
    loop {
        let Some((token, line)) = tokens.get(*at) else {
            return match opened {
                None => Ok(list),
                Some(line) => Err(SyntaxError {
                    line,
                    message: "this block's `{` is never closed".into(),
                }),
            };
        };
        *at += 1;
        let name = match token {
            Token::Close if opened.is_some() => return Ok(list),
            Token::Close => {
                return Err(SyntaxError {
                    line: *line,
                    message: "a `}` closes no block".into(),
                })
            }
            Token::Open | Token::End => {
                return Err(SyntaxError {
                    line: *line,
                    message: "expected a directive name".into(),
                })
            }
            Token::Word(w) => w.clone(),
        };
        let mut args = Vec::new();
        loop {
            match tokens.get(*at) {
                Some((Token::Word(w), _)) => {
                    args.push(w.clone());
                    *at += 1;
                }
                Some((Token::End, _)) => {
                    *at += 1;
                    list.push(Directive {
                        name,
                        args,
                        block: None,
                        line: *line,
                    });
                    break;
                }
                Some((Token::Open, _)) => {
                    *at += 1;
                    let children = block_at(tokens, at, Some(*line), depth + 1)?;
                    list.push(Directive {
                        name,
                        args,
                        block: Some(children),
                        line: *line,
                    });
                    break;
                }
                Some((Token::Close, _)) | None => {
                    return Err(SyntaxError {
                        line: *line,
                        message: format!("`{name}` is not ended with `;`"),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_directives_quotes_and_comments() {
        let text = "# a comment\nmap $http_upgrade $connection_upgrade {\n  default upgrade;\n  '' close;\n}\nserver { listen 80; location / { proxy_set_header X \"a b\"; } }\n";
        let d = parse(text).unwrap();
        assert_eq!(d[0].name, "map");
        assert_eq!(d[0].children()[1].name, "");
        assert_eq!(d[0].children()[1].args, ["close"]);
        let loc = &d[1].children()[1];
        assert_eq!((loc.name.as_str(), loc.arg()), ("location", "/"));
        assert_eq!(loc.children()[0].args, ["X", "a b"]);
        assert_eq!(loc.line, 6);
    }

    #[test]
    fn malformed_text_says_where() {
        assert_eq!(parse("server { listen 80;").unwrap_err().line, 1);
        assert!(parse("listen 80").unwrap_err().message.contains("`;`"));
        assert!(parse("}").unwrap_err().message.contains("closes no block"));
        assert!(parse("a 'b;").unwrap_err().message.contains("never closed"));
    }
}
