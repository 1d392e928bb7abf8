//! The functions a pool offers: ONE table, [`FUNCTIONS`].
//!
//! To add a function, write it as `fn(&[Value]) -> Result<Value, String>` and
//! add a row to the table with its parameters. Arguments are checked against
//! the row (number and types) before the function runs, by the server (so a
//! bad call never reaches a child) and again by the child.

use std::fmt;
use std::time::Duration;

use crate::protocol::{CallError, CallErrorKind, Value};

/// The type of a parameter or result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// Signed 64-bit integer.
    Int,
    /// Unsigned 64-bit integer.
    UInt,
    /// `true` / `false`.
    Bool,
    /// UTF-8 text.
    Text,
    /// A list.
    List,
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ty::Int => "int",
            Ty::UInt => "uint",
            Ty::Bool => "bool",
            Ty::Text => "text",
            Ty::List => "list",
        })
    }
}

/// One row of the registry.
#[derive(Debug)]
pub struct Function {
    /// The name callers use.
    pub name: &'static str,
    /// Parameter names and types, in order.
    pub params: &'static [(&'static str, Ty)],
    /// The result type.
    pub returns: Ty,
    /// One line for `worker list`.
    pub about: &'static str,
    /// The code. Arguments have already been checked against `params`.
    pub run: fn(&[Value]) -> Result<Value, String>,
}

impl Function {
    /// The signature as `add(a: int, b: int) -> int`.
    pub fn signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(name, ty)| format!("{name}: {ty}"))
            .collect();
        format!("{}({}) -> {}", self.name, params.join(", "), self.returns)
    }
}

/// Every function the pool offers.
#[rustfmt::skip]
pub static FUNCTIONS: &[Function] = &[
    Function { name: "add", params: &[("a", Ty::Int), ("b", Ty::Int)], returns: Ty::Int,
        about: "a + b (overflow is an error)", run: add },
    Function { name: "sub", params: &[("a", Ty::Int), ("b", Ty::Int)], returns: Ty::Int,
        about: "a - b (overflow is an error)", run: sub },
    Function { name: "mul", params: &[("a", Ty::Int), ("b", Ty::Int)], returns: Ty::Int,
        about: "a * b (overflow is an error)", run: mul },
    Function { name: "div", params: &[("a", Ty::Int), ("b", Ty::Int)], returns: Ty::Int,
        about: "a / b rounded toward zero (division by zero is an error)", run: div },
    Function { name: "neg", params: &[("a", Ty::Int)], returns: Ty::Int,
        about: "-a", run: neg },
    Function { name: "fib", params: &[("n", Ty::UInt)], returns: Ty::UInt,
        about: "the n-th Fibonacci number (fib 0 = 0; past 93 it does not fit in 64 bits)", run: fib },
    Function { name: "is_prime", params: &[("n", Ty::UInt)], returns: Ty::Bool,
        about: "whether n is prime", run: is_prime },
    Function { name: "factor", params: &[("n", Ty::UInt)], returns: Ty::List,
        about: "the prime factors of n (n >= 1), smallest first", run: factor },
    Function { name: "upper", params: &[("text", Ty::Text)], returns: Ty::Text,
        about: "text in upper case", run: upper },
    Function { name: "word_count", params: &[("text", Ty::Text)], returns: Ty::UInt,
        about: "the number of whitespace-separated words in text", run: word_count },
    Function { name: "sleep_ms", params: &[("ms", Ty::UInt)], returns: Ty::UInt,
        about: "sleeps ms milliseconds (at most one day), returns ms", run: sleep_ms },
    Function { name: "pid", params: &[], returns: Ty::UInt,
        about: "the process id of the child that ran the call", run: pid },
    Function { name: "functions", params: &[], returns: Ty::List,
        about: "this table: every function's signature and what it does", run: functions },
    Function { name: "panic", params: &[], returns: Ty::Text,
        about: "panics inside the function: an error result, the child lives on", run: panic },
    Function { name: "abort", params: &[], returns: Ty::Text,
        about: "aborts the child (SIGABRT): the server reports it and starts another", run: abort },
];

/// The row named `name`.
pub fn lookup(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

/// Converts `value` to `ty` where that loses nothing (an `int` 5 is a `uint` 5).
fn coerce(value: &Value, ty: Ty) -> Option<Value> {
    match (ty, value) {
        (Ty::Int, Value::Int(_)) | (Ty::UInt, Value::UInt(_)) => Some(value.clone()),
        (Ty::Int, Value::UInt(u)) => i64::try_from(*u).ok().map(Value::Int),
        (Ty::UInt, Value::Int(i)) => u64::try_from(*i).ok().map(Value::UInt),
        (Ty::Bool, Value::Bool(_)) | (Ty::Text, Value::Text(_)) | (Ty::List, Value::List(_)) => {
            Some(value.clone())
        }
        _ => None,
    }
}

/// Looks `name` up and checks `args` against its parameters, returning the
/// function and the arguments converted to the declared types.
pub fn check(name: &str, args: &[Value]) -> Result<(&'static Function, Vec<Value>), CallError> {
    let Some(f) = lookup(name) else {
        let names: Vec<&str> = FUNCTIONS.iter().map(|f| f.name).collect();
        return Err(CallError::new(
            CallErrorKind::UnknownFunction,
            format!("unknown function {name:?} (known: {})", names.join(", ")),
        ));
    };
    if args.len() != f.params.len() {
        return Err(CallError::new(
            CallErrorKind::BadArguments,
            format!(
                "expected {} argument{} ({}), got {}",
                f.params.len(),
                if f.params.len() == 1 { "" } else { "s" },
                f.signature(),
                args.len()
            ),
        ));
    }
    let mut converted = Vec::with_capacity(args.len());
    for (arg, (pname, ty)) in args.iter().zip(f.params) {
        match coerce(arg, *ty) {
            Some(v) => converted.push(v),
            None => {
                return Err(CallError::new(
                    CallErrorKind::BadArguments,
                    format!(
                        "argument {pname} must be {} {ty}, got {} ({})",
                        if *ty == Ty::Int || *ty == Ty::UInt {
                            "an"
                        } else {
                            "a"
                        },
                        arg.describe(),
                        f.signature()
                    ),
                ))
            }
        }
    }
    Ok((f, converted))
}

/// Reads command-line words as the arguments of `name`: each word is read
/// as its parameter's type when the function is known and the count
/// matches, else guessed ([`Value::guess`]) and left for the server to check.
pub fn parse_args(name: &str, words: &[String]) -> Vec<Value> {
    match lookup(name) {
        Some(f) if f.params.len() == words.len() => words
            .iter()
            .zip(f.params)
            .map(|(w, (_, ty))| match ty {
                Ty::Text => Value::Text(w.clone()),
                _ => Value::guess(w),
            })
            .collect(),
        _ => words.iter().map(|w| Value::guess(w)).collect(),
    }
}

/// Checks and runs a call in this process. A panic inside the function is
/// NOT caught here (the child does that, see [`crate::child`]).
pub fn call(name: &str, args: &[Value]) -> Result<Value, CallError> {
    let (f, args) = check(name, args)?;
    (f.run)(&args).map_err(|why| CallError::new(CallErrorKind::Failed, why))
}

// ---- the functions ----------------------------------------------------------
// Arguments arrive checked, so the patterns below always match.

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => unreachable!("checked as int: {other:?}"),
    }
}

fn uint(v: &Value) -> u64 {
    match v {
        Value::UInt(u) => *u,
        other => unreachable!("checked as uint: {other:?}"),
    }
}

fn text(v: &Value) -> &str {
    match v {
        Value::Text(t) => t,
        other => unreachable!("checked as text: {other:?}"),
    }
}

fn arith(a: &[Value], op: fn(i64, i64) -> Option<i64>, what: &str) -> Result<Value, String> {
    let (x, y) = (int(&a[0]), int(&a[1]));
    op(x, y)
        .map(Value::Int)
        .ok_or_else(|| format!("{x} {what} {y} overflows a 64-bit integer"))
}

fn add(a: &[Value]) -> Result<Value, String> {
    arith(a, i64::checked_add, "+")
}

fn sub(a: &[Value]) -> Result<Value, String> {
    arith(a, i64::checked_sub, "-")
}

fn mul(a: &[Value]) -> Result<Value, String> {
    arith(a, i64::checked_mul, "*")
}

fn div(a: &[Value]) -> Result<Value, String> {
    if int(&a[1]) == 0 {
        return Err("division by zero".to_owned());
    }
    arith(a, i64::checked_div, "/")
}

fn neg(a: &[Value]) -> Result<Value, String> {
    let x = int(&a[0]);
    x.checked_neg()
        .map(Value::Int)
        .ok_or_else(|| format!("-({x}) overflows a 64-bit integer"))
}

fn fib(a: &[Value]) -> Result<Value, String> {
    let n = uint(&a[0]);
    if n > 93 {
        return Err(format!(
            "fib {n} does not fit in 64 bits (the largest is fib 93)"
        ));
    }
    let (mut x, mut y) = (0u64, 1u64);
    for _ in 0..n {
        (x, y) = (y, x.wrapping_add(y));
    }
    Ok(Value::UInt(x))
}

fn prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u64;
    while d.saturating_mul(d) <= n {
        if n % d == 0 {
            return false;
        }
        d += if d == 2 { 1 } else { 2 };
    }
    true
}

fn is_prime(a: &[Value]) -> Result<Value, String> {
    Ok(Value::Bool(prime(uint(&a[0]))))
}

fn factor(a: &[Value]) -> Result<Value, String> {
    let mut n = uint(&a[0]);
    if n == 0 {
        return Err("0 has no prime factorisation".to_owned());
    }
    let mut out = Vec::new();
    let mut d = 2u64;
    while d.saturating_mul(d) <= n {
        while n % d == 0 {
            out.push(Value::UInt(d));
            n /= d;
        }
        d += if d == 2 { 1 } else { 2 };
    }
    if n > 1 {
        out.push(Value::UInt(n));
    }
    Ok(Value::List(out))
}

fn upper(a: &[Value]) -> Result<Value, String> {
    Ok(Value::Text(text(&a[0]).to_uppercase()))
}

fn word_count(a: &[Value]) -> Result<Value, String> {
    Ok(Value::UInt(text(&a[0]).split_whitespace().count() as u64))
}

fn sleep_ms(a: &[Value]) -> Result<Value, String> {
    let ms = uint(&a[0]);
    if ms > 86_400_000 {
        return Err(format!("{ms} ms is more than a day"));
    }
    std::thread::sleep(Duration::from_millis(ms));
    Ok(Value::UInt(ms))
}

fn pid(_: &[Value]) -> Result<Value, String> {
    Ok(Value::UInt(u64::from(std::process::id())))
}

fn functions(_: &[Value]) -> Result<Value, String> {
    Ok(Value::List(
        FUNCTIONS
            .iter()
            .map(|f| Value::Text(format!("{:<34} {}", f.signature(), f.about)))
            .collect(),
    ))
}

fn panic(_: &[Value]) -> Result<Value, String> {
    panic!("the panic function panicked, as asked")
}

fn abort(_: &[Value]) -> Result<Value, String> {
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_and_errors() {
        assert_eq!(
            call("add", &[Value::Int(2), Value::Int(3)]),
            Ok(Value::Int(5))
        );
        assert_eq!(
            call("div", &[Value::Int(7), Value::Int(2)]),
            Ok(Value::Int(3))
        );
        let e = call("div", &[Value::Int(1), Value::Int(0)]).unwrap_err();
        assert_eq!(e.message, "division by zero");
        let e = call("add", &[Value::Int(i64::MAX), Value::Int(1)]).unwrap_err();
        assert!(e.message.contains("overflows"), "{e}");
    }

    #[test]
    fn fib_limits() {
        assert_eq!(call("fib", &[Value::Int(10)]), Ok(Value::UInt(55)));
        assert_eq!(
            call("fib", &[Value::Int(93)]),
            Ok(Value::UInt(12_200_160_415_121_876_738))
        );
        assert!(call("fib", &[Value::Int(94)]).is_err());
        assert!(call("fib", &[Value::Int(-1)]).is_err());
    }

    #[test]
    fn primes_and_factors() {
        assert_eq!(call("is_prime", &[Value::Int(97)]), Ok(Value::Bool(true)));
        assert_eq!(call("is_prime", &[Value::Int(1)]), Ok(Value::Bool(false)));
        let f = call("factor", &[Value::Int(360)]).unwrap();
        assert_eq!(f.to_string(), "2 2 2 3 3 5");
        let big = u64::MAX; // 3 5 17 257 641 65537 6700417
        assert_eq!(
            call("factor", &[Value::UInt(big)]).unwrap().to_string(),
            "3 5 17 257 641 65537 6700417"
        );
    }

    #[test]
    fn text_functions() {
        let t = Value::Text("hello big world".into());
        assert_eq!(
            call("upper", std::slice::from_ref(&t)),
            Ok(Value::Text("HELLO BIG WORLD".into()))
        );
        assert_eq!(call("word_count", &[t]), Ok(Value::UInt(3)));
    }

    #[test]
    fn bad_calls_say_what_was_expected() {
        let e = call("nope", &[]).unwrap_err();
        assert_eq!(e.kind, CallErrorKind::UnknownFunction);
        assert!(e.message.contains("add"), "{e}");
        let e = call("add", &[Value::Int(1)]).unwrap_err();
        assert_eq!(e.kind, CallErrorKind::BadArguments);
        assert!(
            e.message
                .contains("expected 2 arguments (add(a: int, b: int) -> int), got 1"),
            "{e}"
        );
        let e = call("add", &[Value::Int(1), Value::Text("x".into())]).unwrap_err();
        assert!(
            e.message
                .contains("argument b must be an int, got text \"x\""),
            "{e}"
        );
    }

    #[test]
    fn command_line_words_follow_the_signature() {
        let words = vec!["42".to_owned()];
        assert_eq!(parse_args("upper", &words), vec![Value::Text("42".into())]);
        assert_eq!(parse_args("neg", &words), vec![Value::Int(42)]);
    }
}
