/**
 * Node client for the speech platform over @grpc/grpc-js.
 *
 * The .proto files are loaded at run time by @grpc/proto-loader (copied next to this file by
 * the build), and every request and response is typed by the interfaces that
 * `proto-loader-gen-types` generated from the same protos/ (src/generated, build output).
 * Every service in protos/ is therefore available as soon as the build runs again; this
 * module adds TLS and token handling, WAV reading, and promise wrappers for the RPCs.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import type { ProtoGrpcType } from './generated';
import type { SpeechToTextClient } from './generated/speech/v1/SpeechToText';
import type { TextToSpeechClient } from './generated/speech/v1/TextToSpeech';
import type { JobsClient } from './generated/speech/v1/Jobs';
import type { TranscribeRequest } from './generated/speech/v1/TranscribeRequest';
import type { TranscribeResponse__Output } from './generated/speech/v1/TranscribeResponse';
import type { StreamingRecognitionConfig } from './generated/speech/v1/StreamingRecognitionConfig';
import type { StreamingTranscribeResponse__Output } from './generated/speech/v1/StreamingTranscribeResponse';
import type { SynthesizeRequest } from './generated/speech/v1/SynthesizeRequest';
import type { SynthesizeResponse__Output } from './generated/speech/v1/SynthesizeResponse';
import type { StreamingSynthesizeRequest } from './generated/speech/v1/StreamingSynthesizeRequest';
import type { StreamingSynthesizeResponse__Output } from './generated/speech/v1/StreamingSynthesizeResponse';

/** Must match the options the types were generated with (tools/clients/node.py). */
const LOADER_OPTIONS: protoLoader.Options = {
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** Where the build put a copy of protos/. */
export const PROTO_ROOT = path.join(__dirname, 'protos');

function protoFiles(root: string, dir = ''): string[] {
  return fs.readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const relative = path.join(dir, entry.name);
    if (entry.isDirectory()) return protoFiles(root, relative);
    return entry.name.endsWith('.proto') ? [relative] : [];
  });
}

/** The speech.v1 package: every message and service constructor of every file in protos/. */
export function loadSpeechApi(protoRoot: string = PROTO_ROOT): ProtoGrpcType['speech']['v1'] {
  const definition = protoLoader.loadSync(protoFiles(protoRoot), {
    ...LOADER_OPTIONS,
    includeDirs: [protoRoot],
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;
  return loaded.speech.v1;
}

export interface ClientOptions {
  /** host:port */
  target: string;
  /** Bearer token sent as "authorization" metadata on every call. */
  token?: string;
  /** PEM roots for the server certificate; without it the channel is plaintext. */
  ca?: string;
  /** Client certificate and key (PEM files) for mutual TLS. */
  cert?: string;
  key?: string;
  /** Deadline of each call, in milliseconds. */
  timeoutMs?: number;
}

function channelCredentials(options: ClientOptions): grpc.ChannelCredentials {
  if (!options.ca) return grpc.credentials.createInsecure();
  if (!options.cert !== !options.key) throw new Error('mutual TLS needs both cert and key');
  return grpc.credentials.createSsl(
    fs.readFileSync(options.ca),
    options.key ? fs.readFileSync(options.key) : null,
    options.cert ? fs.readFileSync(options.cert) : null,
  );
}

export interface Wav {
  pcm: Buffer;
  sampleRate: number;
  channels: number;
}

/** The 16-bit PCM of a RIFF/WAVE file (StreamingTranscribe takes raw samples). */
export function readWav(file: string): Wav {
  const data = fs.readFileSync(file);
  if (data.toString('latin1', 0, 4) !== 'RIFF' || data.toString('latin1', 8, 12) !== 'WAVE') {
    throw new Error(`${file}: not a RIFF/WAVE file`);
  }
  let sampleRate = 0;
  let channels = 0;
  let bits = 0;
  let pcm: Buffer | undefined;
  for (let offset = 12; offset + 8 <= data.length; ) {
    const id = data.toString('latin1', offset, offset + 4);
    const body = offset + 8;
    const size = Math.min(data.readUInt32LE(offset + 4), data.length - body);
    if (id === 'fmt ') {
      channels = data.readUInt16LE(body + 2);
      sampleRate = data.readUInt32LE(body + 4);
      bits = data.readUInt16LE(body + 14);
    } else if (id === 'data') {
      pcm = data.subarray(body, body + size);
    }
    offset = body + size + (size % 2);
  }
  if (bits !== 16 || pcm === undefined) throw new Error(`${file}: needs 16-bit PCM with a data chunk`);
  return { pcm, sampleRate, channels };
}

/** One channel to the server with a stub per service. */
export class SpeechClient {
  readonly stt: SpeechToTextClient;
  readonly tts: TextToSpeechClient;
  readonly jobs: JobsClient;

  constructor(private readonly options: ClientOptions, api = loadSpeechApi()) {
    const credentials = channelCredentials(options);
    const channelOptions = { 'grpc.max_receive_message_length': 64 << 20 };
    this.stt = new api.SpeechToText(options.target, credentials, channelOptions);
    this.tts = new api.TextToSpeech(options.target, credentials, channelOptions);
    this.jobs = new api.Jobs(options.target, credentials, channelOptions);
  }

  /** Metadata for one call (the bearer token, where one is set). */
  metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    if (this.options.token) metadata.set('authorization', `Bearer ${this.options.token}`);
    return metadata;
  }

  callOptions(): grpc.CallOptions {
    return { deadline: Date.now() + (this.options.timeoutMs ?? 120_000) };
  }

  transcribe(request: TranscribeRequest): Promise<TranscribeResponse__Output> {
    return new Promise((resolve, reject) => {
      this.stt.Transcribe(request, this.metadata(), this.callOptions(), (error, response) =>
        error || !response ? reject(error) : resolve(response),
      );
    });
  }

  /** Streams raw 16-bit PCM in chunks and resolves with every result the server sent. */
  streamTranscribe(
    pcm: Buffer,
    config: StreamingRecognitionConfig,
    chunkBytes = 6400,
  ): Promise<StreamingTranscribeResponse__Output[]> {
    return new Promise((resolve, reject) => {
      const call = this.stt.StreamingTranscribe(this.metadata(), this.callOptions());
      const results: StreamingTranscribeResponse__Output[] = [];
      call.on('data', (result: StreamingTranscribeResponse__Output) => results.push(result));
      call.on('error', reject);
      call.on('end', () => resolve(results));
      call.write({ streamingConfig: config });
      for (let start = 0; start < pcm.length; start += chunkBytes) {
        call.write({ audioContent: pcm.subarray(start, start + chunkBytes) });
      }
      call.end();
    });
  }

  synthesize(request: SynthesizeRequest): Promise<SynthesizeResponse__Output> {
    return new Promise((resolve, reject) => {
      this.tts.Synthesize(request, this.metadata(), this.callOptions(), (error, response) =>
        error || !response ? reject(error) : resolve(response),
      );
    });
  }

  /** Resolves with every sentence StreamingSynthesize sent, in order. */
  streamSynthesize(request: StreamingSynthesizeRequest): Promise<StreamingSynthesizeResponse__Output[]> {
    return new Promise((resolve, reject) => {
      const call = this.tts.StreamingSynthesize(request, this.metadata(), this.callOptions());
      const parts: StreamingSynthesizeResponse__Output[] = [];
      call.on('data', (part: StreamingSynthesizeResponse__Output) => parts.push(part));
      call.on('error', reject);
      call.on('end', () => resolve(parts));
    });
  }

  close(): void {
    this.stt.close();
    this.tts.close();
    this.jobs.close();
  }
}
