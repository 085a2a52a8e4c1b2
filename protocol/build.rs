//! Compiles protos/agent.proto into rust-protobuf messages and async ttrpc bindings (pure Rust:
//! no protoc needed).
//!
//! The generated files open with inner attributes (`#![allow(..)]`, `//!`), which `include!`
//! does not accept: they are dropped here and lib.rs puts equivalent outer attributes on the
//! modules that include the files.
use std::path::Path;
use std::{env, fs};

use ttrpc_codegen::{Codegen, Customize, ProtobufCustomize};

const GENERATED: [&str; 2] = ["agent.rs", "agent_ttrpc.rs"];

fn main() {
    println!("cargo:rerun-if-changed=protos/agent.proto");
    let out_dir = env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    Codegen::new()
        .out_dir(&out_dir)
        .inputs(["protos/agent.proto"])
        .include("protos")
        .rust_protobuf()
        .customize(Customize {
            async_all: true,
            ..Default::default()
        })
        .rust_protobuf_customize(ProtobufCustomize::default().gen_mod_rs(false))
        .run()
        .expect("generating the agent protocol code");
    for name in GENERATED {
        let path = Path::new(&out_dir).join(name);
        let text = fs::read_to_string(&path).expect("reading generated code");
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("#![") && !l.starts_with("//!"))
            .collect();
        fs::write(&path, kept.join("\n")).expect("writing generated code");
    }
}
