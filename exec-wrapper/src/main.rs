fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    std::process::exit(exec_wrapper::main_with_args(&argv));
}
