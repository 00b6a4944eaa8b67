#!/usr/bin/env bash
# Builds vigil's image for linux/amd64 and linux/arm64 without a Docker
# daemon or a registry: the host's Go cross-compiles static binaries into
# bin/linux-<arch>/ (vigil and vigil-bgp), and buildah (vfs storage, chroot isolation) builds
# the Dockerfile's "prebuilt" stage (FROM scratch) around it.
#
#   testing/image/build.sh            # needs root (buildah with vfs)
#
# Writes, per architecture:
#   bin/image/linux-<arch>/rootfs/   the image's root filesystem
# and bin/image/vigil.tar, the multi-arch image (an OCI index) as an OCI
# archive, and prints each image's uncompressed size. `vigil version` is run from
# each root filesystem: amd64 in a chroot, arm64 under qemu-aarch64-static.
#
# Environment:
#   VERSION            version stamped into the binary (default: git describe)
#   IMAGE_ARCHES       architectures (default "amd64 arm64")
#   VIGIL_IMAGE_STORE  buildah storage (default ${XDG_CACHE_HOME:-$HOME/.cache}/vigil/image-store/<checkout>)
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
ARCHES=${IMAGE_ARCHES:-amd64 arm64}
# One store per checkout: the script empties it on exit.
STORE=${VIGIL_IMAGE_STORE:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil/image-store/$(pwd | sha256sum | cut -c1-12)}
OUT=bin/image
IMAGE=localhost/vigil

log() { printf '[image] %s\n' "$*" >&2; }
bah() { buildah --storage-driver vfs --root "$STORE/root" --runroot "$STORE/run" "$@"; }

for tool in buildah chroot; do
	command -v "$tool" >/dev/null || { log "$tool not found (bash testing/install-deps.sh installs it)"; exit 1; }
done

build_binary() {
	local arch=$1
	mkdir -p "bin/linux-$arch"
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath \
		-ldflags "-s -w -X github.com/vigil-lb/vigil/pkg/cli.Version=$VERSION" \
		-o "bin/linux-$arch/" ./cmd/vigil ./cmd/vigil-bgp
}

# export_rootfs copies the image's root filesystem out of buildah's storage.
export_rootfs() {
	local tag=$1 dest=$2 ctr mnt
	ctr=$(bah from --pull-never --arch "${tag##*-}" "$tag")
	mnt=$(bah mount "$ctr")
	rm -rf "$dest"
	mkdir -p "$dest"
	cp -a "$mnt/." "$dest/"
	bah umount "$ctr" >/dev/null
	bah rm "$ctr" >/dev/null
}

# run_version runs `vigil version` from the root filesystem.
run_version() {
	local arch=$1 rootfs=$2
	case $arch in
	amd64) chroot "$rootfs" /usr/local/bin/vigil version ;;
	arm64) qemu-aarch64-static "$rootfs/usr/local/bin/vigil" version ;;
	*) log "no way to run $arch here"; return 1 ;;
	esac
}

mkdir -p "$OUT"
list="$IMAGE:$VERSION"
bah manifest rm "$list" >/dev/null 2>&1 || true
bah manifest create "$list" >/dev/null
# The store is scratch space: the archive and the root filesystems are the
# output, so leave nothing behind in it.
trap 'bah manifest rm "$list" >/dev/null 2>&1 || true; bah rmi --all >/dev/null 2>&1 || true' EXIT
for arch in $ARCHES; do
	tag="$IMAGE:$VERSION-$arch"
	log "linux/$arch: go build"
	build_binary "$arch"
	log "linux/$arch: buildah bud --target prebuilt -> $tag"
	bah bud --quiet --isolation chroot --platform "linux/$arch" --target prebuilt \
		--build-arg "VERSION=$VERSION" -t "$tag" -f Dockerfile . >/dev/null
	bah manifest add --arch "$arch" --os linux "$list" "$tag" >/dev/null
	export_rootfs "$tag" "$OUT/linux-$arch/rootfs"
	got=$(run_version "$arch" "$OUT/linux-$arch/rootfs")
	[[ $got == "$VERSION" ]] || { log "linux/$arch: vigil version printed '$got', want '$VERSION'"; exit 1; }
	[[ -x $OUT/linux-$arch/rootfs/usr/local/bin/vigil-bgp ]] || { log "linux/$arch: no /usr/local/bin/vigil-bgp in the image"; exit 1; }
	size=$(du -sb "$OUT/linux-$arch/rootfs" | cut -f1)
	log "linux/$arch: $tag ok (vigil version: $got); uncompressed $((size / 1000000)) MB ($size bytes)"
done
# One multi-arch image (an OCI index over the architectures) as an archive:
# skopeo copy --all oci-archive:bin/image/vigil.tar docker://<registry>/vigil:<tag>
rm -f "$OUT"/vigil*.tar
bah manifest push --quiet --all "$list" "oci-archive:$OUT/vigil.tar:$list" >/dev/null
log "multi-arch image ($ARCHES): $OUT/vigil.tar, $(($(stat -c %s "$OUT/vigil.tar") / 1000000)) MB compressed"
