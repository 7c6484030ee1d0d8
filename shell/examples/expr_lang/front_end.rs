//! A front end for the execution manager's example: a tiny expression language to CLIF text.
//!
//! ```text
//! def fact(n) = if n < 2 then 1 else n * fact(n - 1)
//! def even(n) = if n == 0 then 1 else odd(n - 1)
//! ```
//!
//! One definition per line; integers (`i64`), `+ - * /`, `< == >` (in an `if` only), calls to
//! any name (another definition, a loaded module's export, the C library), parentheses.

/// The CLIF text of every definition in `source` (`ExecManager::compile_source` takes it).
pub(crate) fn to_clif(source: &str) -> Result<String, String> {
    let mut clif = String::new();
    for (n, line) in source.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let function = Parser::new(line).definition().map_err(|e| format!("line {}: {e}", n + 1))?;
        clif.push_str(&function);
    }
    Ok(clif)
}

/// One line being turned into one CLIF function.
struct Parser {
    tokens: Vec<String>,
    at: usize,
    params: Vec<String>,
    body: String,
    values: usize,
    blocks: usize,
    callees: Vec<(String, usize)>,
}

impl Parser {
    fn new(line: &str) -> Self {
        let mut tokens = Vec::new();
        let mut chars = line.chars().peekable();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                chars.next();
            } else if c.is_alphanumeric() || c == '_' {
                let mut word = String::new();
                while let Some(&c) = chars.peek().filter(|c| c.is_alphanumeric() || **c == '_') {
                    word.push(c);
                    chars.next();
                }
                tokens.push(word);
            } else if c == '=' && chars.clone().nth(1) == Some('=') {
                tokens.push("==".into());
                chars.nth(1);
            } else {
                tokens.push(c.to_string());
                chars.next();
            }
        }
        Parser {
            tokens,
            at: 0,
            params: Vec::new(),
            body: String::new(),
            values: 0,
            blocks: 1,
            callees: Vec::new(),
        }
    }

    fn peek(&self) -> &str {
        self.tokens.get(self.at).map_or("", String::as_str)
    }

    fn next(&mut self) -> String {
        self.at += 1;
        self.tokens.get(self.at - 1).cloned().unwrap_or_default()
    }

    fn expect(&mut self, token: &str) -> Result<(), String> {
        match self.next() {
            t if t == token => Ok(()),
            t => Err(format!("expected `{token}`, found `{t}`")),
        }
    }

    fn value(&mut self, instruction: String) -> String {
        let v = format!("v{}", self.params.len() + self.values);
        self.values += 1;
        self.body.push_str(&format!("    {v} = {instruction}\n"));
        v
    }

    /// `def NAME(PARAMS) = EXPR`, as a CLIF function.
    fn definition(mut self) -> Result<String, String> {
        self.expect("def")?;
        let name = self.next();
        self.expect("(")?;
        while self.peek() != ")" {
            let param = self.next();
            self.params.push(param);
            if self.peek() == "," {
                self.next();
            }
        }
        self.expect(")")?;
        self.expect("=")?;
        let result = self.expr()?;
        if self.at < self.tokens.len() {
            return Err(format!("unexpected `{}`", self.peek()));
        }
        let params = vec!["i64"; self.params.len()].join(", ");
        let args: Vec<String> = (0..self.params.len()).map(|i| format!("v{i}: i64")).collect();
        let mut out = format!("function %{name}({params}) -> i64 {{\n");
        for (callee, arity) in &self.callees {
            let params = vec!["i64"; *arity].join(", ");
            out.push_str(&format!("    fn{} = %{callee}({params}) -> i64\n", out.matches("    fn").count()));
        }
        out.push_str(&format!("block0({}):\n{}    return {result}\n}}\n", args.join(", "), self.body));
        Ok(out)
    }

    fn expr(&mut self) -> Result<String, String> {
        if self.peek() != "if" {
            return self.sum();
        }
        self.next();
        let left = self.sum()?;
        let op = match self.next().as_str() {
            "<" => "slt",
            ">" => "sgt",
            "==" => "eq",
            other => return Err(format!("expected a comparison, found `{other}`")),
        };
        let right = self.sum()?;
        let condition = self.value(format!("icmp {op} {left}, {right}"));
        let (then_block, else_block, join) = (self.blocks, self.blocks + 1, self.blocks + 2);
        self.blocks += 3;
        let result = format!("v{}", self.params.len() + self.values);
        self.values += 1;
        self.body.push_str(&format!("    brif {condition}, block{then_block}, block{else_block}\n"));
        for (block, keyword) in [(then_block, "then"), (else_block, "else")] {
            self.expect(keyword)?;
            self.body.push_str(&format!("block{block}:\n"));
            let value = self.expr()?;
            self.body.push_str(&format!("    jump block{join}({value})\n"));
        }
        self.body.push_str(&format!("block{join}({result}: i64):\n"));
        Ok(result)
    }

    fn sum(&mut self) -> Result<String, String> {
        let mut left = self.term()?;
        while matches!(self.peek(), "+" | "-") {
            let op = if self.next() == "+" { "iadd" } else { "isub" };
            let right = self.term()?;
            left = self.value(format!("{op} {left}, {right}"));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<String, String> {
        let mut left = self.atom()?;
        while matches!(self.peek(), "*" | "/") {
            let op = if self.next() == "*" { "imul" } else { "sdiv" };
            let right = self.atom()?;
            left = self.value(format!("{op} {left}, {right}"));
        }
        Ok(left)
    }

    fn atom(&mut self) -> Result<String, String> {
        let token = self.next();
        if token == "(" {
            let value = self.expr()?;
            self.expect(")")?;
            return Ok(value);
        }
        if let Ok(n) = token.parse::<i64>() {
            return Ok(self.value(format!("iconst.i64 {n}")));
        }
        if !token.starts_with(|c: char| c.is_alphabetic() || c == '_') {
            return Err(format!("unexpected `{token}`"));
        }
        if self.peek() != "(" {
            let index =
                self.params.iter().position(|p| *p == token).ok_or(format!("unknown name `{token}`"))?;
            return Ok(format!("v{index}"));
        }
        self.next();
        let mut args = Vec::new();
        while self.peek() != ")" {
            args.push(self.expr()?);
            if self.peek() == "," {
                self.next();
            }
        }
        self.expect(")")?;
        let callee = match self.callees.iter().position(|(c, _)| *c == token) {
            Some(i) => i,
            None => {
                self.callees.push((token, args.len()));
                self.callees.len() - 1
            }
        };
        Ok(self.value(format!("call fn{callee}({})", args.join(", "))))
    }
}
