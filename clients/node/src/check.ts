#!/usr/bin/env node
/**
 * Calls the four speech RPCs of a running server through this client and checks what comes
 * back: the transcript of a real recording holds the words expected, and synthesized audio
 * is 16-bit PCM of a plausible length. Prints a JSON report; exits 1 when a check fails
 * (tests/clients runs it against the real server).
 */
import * as fs from 'fs';
import { parseArgs } from 'util';

import { SpeechClient, readWav } from './client';

const { values: args } = parseArgs({
  options: {
    target: { type: 'string', default: '127.0.0.1:50051' },
    token: { type: 'string' },
    ca: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    wav: { type: 'string' },
    expect: { type: 'string', default: '' },
    text: { type: 'string', default: 'Tell me about a project you are proud of. What did you learn?' },
    voice: { type: 'string', default: 'en_US-joe-medium' },
  },
});

const failures: string[] = [];
const check = (ok: boolean, message: string): void => {
  if (!ok) failures.push(message);
};
const words = args.expect!.toLowerCase().split(',').filter((word) => word);
const containsAll = (text: string): boolean => words.every((word) => text.toLowerCase().includes(word));

/** Non-empty 16-bit PCM matching the reported duration, 30 to 200 ms per character of text. */
function checkPcm(what: string, pcm: Buffer, rate: number, reported: number, text: string): number {
  const seconds = rate > 0 ? pcm.length / 2 / rate : 0;
  check(pcm.length > 0 && pcm.length % 2 === 0, `${what}: ${pcm.length} bytes is not 16-bit PCM`);
  check(Math.abs(seconds - reported) < 0.05, `${what}: ${seconds} s of samples, ${reported} s reported`);
  check(seconds > 0.03 * text.length && seconds < 0.2 * text.length, `${what}: ${seconds} s for ${text.length} characters`);
  return seconds;
}

async function main(): Promise<number> {
  const client = new SpeechClient({ target: args.target!, token: args.token, ca: args.ca, cert: args.cert, key: args.key });
  const report: Record<string, unknown> = {};
  try {
    const wavPath = args.wav!;
    const transcript = await client.transcribe({ audio: fs.readFileSync(wavPath) });
    report.transcribe = { text: transcript.text, model: transcript.model };
    check(containsAll(transcript.text), `Transcribe: "${transcript.text}" lacks ${words}`);

    const wav = readWav(wavPath);
    const results = await client.streamTranscribe(wav.pcm, {
      config: { encoding: 'AUDIO_ENCODING_LINEAR16', sampleRateHertz: wav.sampleRate },
      interimResults: true,
    });
    const finals = results.filter((result) => result.isFinal).map((result) => result.text);
    report.streaming_transcribe = { finals, interims: results.length - finals.length };
    check(containsAll(finals.join(' ')), `StreamingTranscribe: finals "${finals.join(' ')}" lack ${words}`);

    const text = args.text!;
    const audioConfig = { encoding: 'AUDIO_ENCODING_LINEAR16' as const };
    const speech = await client.synthesize({ text, voice: args.voice, audioConfig });
    report.synthesize = {
      bytes: speech.audio.length,
      sample_rate_hertz: speech.sampleRateHertz,
      seconds: checkPcm('Synthesize', speech.audio, speech.sampleRateHertz, speech.audioDurationSeconds, text),
      engine: speech.engine,
    };

    const parts = await client.streamSynthesize({ text, voice: args.voice, audioConfig });
    parts.forEach((part, i) => {
      check(part.audio.length > 0, `StreamingSynthesize: part ${i} has no audio`);
      check(part.sentenceIndex === i, `StreamingSynthesize: part ${i} has index ${part.sentenceIndex}`);
    });
    check(parts.length >= 2, `StreamingSynthesize: ${parts.length} parts for a text of two sentences`);
    const joined = Buffer.concat(parts.map((part) => part.audio));
    const reported = parts.reduce((sum, part) => sum + part.audioDurationSeconds, 0);
    report.streaming_synthesize = {
      parts: parts.length,
      bytes: joined.length,
      seconds: checkPcm('StreamingSynthesize', joined, parts[0]?.sampleRateHertz ?? 0, reported, text),
    };
  } catch (error) {
    failures.push(`call failed: ${(error as Error).message}`);
  } finally {
    client.close();
  }
  report.failures = failures;
  console.log(JSON.stringify(report, null, 2));
  return failures.length ? 1 : 0;
}

main().then((code) => process.exit(code));
