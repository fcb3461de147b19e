// The C2 container image the stacks deploy (stacks/docker/c2.Dockerfile), built on a host without a
// Go image: the c2 and c2cli that scripts/build-c2.sh built go into a small "binaries" image, which the
// Dockerfile takes as GO_IMAGE (it compiles nothing when /out/c2 is there). Same Dockerfile, same
// runtime stage as a deployment; only where the binaries come from differs.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { c2BinaryDir, pinnedC2Version } from './c2.ts';
import { REPO_ROOT } from '../repo-root.ts';
import { ensureDebianBaseTarball, runDocker } from './docker-engine.ts';

export const C2_DOCKERFILE = path.join(REPO_ROOT, 'stacks', 'docker', 'c2.Dockerfile');

/** What c2.Dockerfile's runtime stage needs from its base (curl for the health check; useradd is in passwd). */
export const C2_IMAGE_BASE_PACKAGES = ['ca-certificates', 'curl', 'passwd'];

/** The cached Debian tarball C2 images are built on here (scripts/setup.sh makes it ahead of the tests). */
export function ensureC2ImageBaseTarball(): string {
  return ensureDebianBaseTarball({ include: C2_IMAGE_BASE_PACKAGES });
}

export interface BuildC2ImageOptions {
  /** Image tag to build, e.g. e4ops/c2:test. */
  tag: string;
  /** Base image for both stages (a Debian image that has curl and CA certificates needs no network). */
  baseImage: string;
  /** Folder holding c2 and c2cli (default: the build-c2.sh cache). */
  binDir?: string;
}

/** Build the C2 image from prebuilt binaries; returns the tag. */
export function buildC2ImageFromBinaries(dockerHost: string | undefined, opts: BuildC2ImageOptions): string {
  const binDir = opts.binDir ?? c2BinaryDir();
  for (const b of ['c2', 'c2cli']) {
    if (!fs.existsSync(path.join(binDir, b))) throw new Error(`${path.join(binDir, b)} does not exist: run bash scripts/build-c2.sh`);
  }
  const ctx = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-c2-binaries-'));
  try {
    for (const b of ['c2', 'c2cli']) fs.copyFileSync(path.join(binDir, b), path.join(ctx, b));
    const binariesTag = `${opts.tag.replace(/:[^/:]*$/, '')}-binaries:${pinnedC2Version().slice(-12)}`;
    runDocker(dockerHost, ['build', '--network', 'host', '-q', '-t', binariesTag, '-f', '-', ctx], {
      input: `FROM ${opts.baseImage}\nCOPY c2 c2cli /out/\n`,
    });
    runDocker(dockerHost, ['build', '--network', 'host', '-q', '-t', opts.tag,
      '--build-arg', `GO_IMAGE=${binariesTag}`, '--build-arg', `RUNTIME_IMAGE=${opts.baseImage}`,
      '-f', C2_DOCKERFILE, path.dirname(C2_DOCKERFILE)]);
    return opts.tag;
  } finally {
    fs.rmSync(ctx, { recursive: true, force: true });
  }
}
