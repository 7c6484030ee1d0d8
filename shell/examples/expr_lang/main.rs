//! The execution manager from source to a result: a tiny expression language (`front_end.rs`)
//! compiled through Cranelift into W^X memory, then called by name.
//!
//! `cargo run -p smf-loader --features cranelift --example expr_lang -- 'def sq(x) = x * x' sq 7`

mod front_end;

use std::sync::Arc;

use smf::exec_manager::{ExecManager, OptLevel};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(source), Some(function)) = (args.next(), args.next()) else {
        eprintln!("usage: expr_lang 'def NAME(PARAMS) = EXPR' FUNCTION [INTEGER...]");
        std::process::exit(2);
    };
    let values: Result<Vec<i64>, _> = args.map(|a| a.parse::<i64>()).collect();
    let Ok(values) = values else {
        eprintln!("expr_lang: the arguments are integers");
        std::process::exit(2);
    };
    let run = || -> Result<i64, Box<dyn std::error::Error>> {
        let manager = ExecManager::new(OptLevel::Speed)?;
        manager.set_front_end(Arc::new(front_end::to_clif));
        manager.compile_source(&source.replace(';', "\n"))?;
        Ok(manager.execute(&function, &values)?)
    };
    match run() {
        Ok(result) => println!("{result}"),
        Err(e) => {
            eprintln!("expr_lang: {e}");
            std::process::exit(1);
        }
    }
}
