# syntax=docker/dockerfile:1
# The operator image (operator and CLI are one binary): a static (musl) release build on
# Debian, in an image of nothing else — the binary, CA roots, and a passwd entry for the
# non-root user 65532 — so no runtime base image can drift under it. `make dist` makes the
# same image as OCI layouts (target/dist/testmesh-VERSION-oci-ARCH.tar) without a
# container engine.
#   docker build -t ghcr.io/testmesh/testmesh:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t ghcr.io/testmesh/testmesh:0.1.0 .
# The build image is pinned to an exact release, the toolchain the repository is tested
# with, and musl-tools to Debian 12's exact version. Where the registry is reachable, pin
# the digest too (`crane digest docker.io/library/rust:1.95.0-bookworm`).
FROM docker.io/library/rust:1.95.0-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
 && rm -rf /var/lib/apt/lists/*
# ring and psm compile C and assembly for the target: musl-gcc on either architecture.
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CC_aarch64_unknown_linux_musl=musl-gcc
WORKDIR /src
COPY . .
# Built for the stage's own architecture (buildx runs it once per platform).
RUN target="$(uname -m)-unknown-linux-musl" \
 && rustup target add "$target" \
 && cargo build --release --locked --bin testmesh --target "$target" \
 && install -D -m 0755 "target/$target/release/testmesh" /rootfs/testmesh \
 && install -D -m 0644 /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /rootfs/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' > /rootfs/etc/group \
 && /rootfs/testmesh --version

FROM scratch
COPY --from=build /rootfs/ /
USER 65532:65532
ENTRYPOINT ["/testmesh"]
CMD ["run"]
