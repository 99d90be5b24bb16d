//! `schema.graphql` is the exported schema: this fails when the code changes it.

#[test]
fn schema_file_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let on_disk = std::fs::read_to_string(path).expect("schema.graphql exists");
    assert!(
        on_disk == liteskill::graphql::sdl(),
        "schema.graphql is out of date: run `cargo run -- schema export -o schema.graphql`"
    );
}
