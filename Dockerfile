# The operator image: a release build on Debian, run on distroless (glibc, no shell) as
# non-root.
#   docker build -t ghcr.io/testmesh/testmesh:0.1.0 .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin testmesh

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/testmesh /testmesh
USER 65532:65532
ENTRYPOINT ["/testmesh"]
CMD ["run"]
