// Command speechcheck calls the four speech RPCs of a running server through the generated
// Go stubs and checks what comes back: the transcript of a real recording holds the words
// expected, and synthesized audio is PCM of a plausible length. It prints a JSON report
// and exits 1 when a check fails (tests/clients runs it against the real server).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"example.com/speech/client/speechclient"
	speechv1 "example.com/speech/gen/speech/v1"
)

type report struct {
	Transcribe          map[string]interface{} `json:"transcribe"`
	StreamingTranscribe map[string]interface{} `json:"streaming_transcribe"`
	Synthesize          map[string]interface{} `json:"synthesize"`
	StreamingSynthesize map[string]interface{} `json:"streaming_synthesize"`
	Failures            []string               `json:"failures"`
}

func main() {
	var opts speechclient.Options
	flag.StringVar(&opts.Target, "target", "127.0.0.1:50051", "server host:port")
	flag.StringVar(&opts.Token, "token", "", "bearer token")
	flag.StringVar(&opts.CAFile, "ca", "", "PEM CA bundle (enables TLS)")
	flag.StringVar(&opts.CertFile, "cert", "", "client certificate (mutual TLS)")
	flag.StringVar(&opts.KeyFile, "key", "", "client key (mutual TLS)")
	wavPath := flag.String("wav", "", "16-bit PCM WAV recording to transcribe")
	expect := flag.String("expect", "", "comma-separated words the transcript must contain")
	text := flag.String("text", "Tell me about a project you are proud of. What did you learn?", "text to synthesize")
	voice := flag.String("voice", "en_US-joe-medium", "voice to synthesize with")
	timeout := flag.Duration("timeout", 120*time.Second, "deadline of each call")
	flag.Parse()

	client, err := speechclient.Dial(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer client.Close()
	words := strings.Split(strings.ToLower(*expect), ",")
	r := report{Failures: []string{}}
	check := func(ok bool, format string, args ...interface{}) {
		if !ok {
			r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
		}
	}
	call := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), *timeout)
	}

	ctx, cancel := call()
	transcript, err := client.TranscribeFile(ctx, *wavPath)
	cancel()
	check(err == nil, "Transcribe: %v", err)
	if err == nil {
		r.Transcribe = map[string]interface{}{"text": transcript.Text, "model": transcript.Model}
		check(containsAll(transcript.Text, words), "Transcribe: %q lacks %v", transcript.Text, words)
	}

	wav, err := speechclient.ReadWAV(*wavPath)
	check(err == nil && wav.Channels == 1, "ReadWAV: %v (channels %d)", err, wav.Channels)
	ctx, cancel = call()
	results, err := client.StreamPCM(ctx, wav.PCM, wav.SampleRate, wav.SampleRate/5)
	cancel()
	check(err == nil, "StreamingTranscribe: %v", err)
	var finals []string
	interims := 0
	for _, result := range results {
		if result.IsFinal {
			finals = append(finals, result.Text)
		} else {
			interims++
		}
	}
	heard := strings.Join(finals, " ")
	r.StreamingTranscribe = map[string]interface{}{"finals": finals, "interims": interims}
	check(containsAll(heard, words), "StreamingTranscribe: finals %q lack %v", heard, words)

	linear16 := &speechv1.AudioConfig{Encoding: speechv1.AudioEncoding_AUDIO_ENCODING_LINEAR16}
	ctx, cancel = call()
	speech, err := client.TTS.Synthesize(ctx, &speechv1.SynthesizeRequest{Text: *text, Voice: *voice, AudioConfig: linear16})
	cancel()
	check(err == nil, "Synthesize: %v", err)
	if err == nil {
		seconds := pcmSeconds(speech.Audio, speech.SampleRateHertz)
		r.Synthesize = map[string]interface{}{
			"bytes": len(speech.Audio), "sample_rate_hertz": speech.SampleRateHertz,
			"seconds": seconds, "engine": speech.Engine,
		}
		checkPCM(check, "Synthesize", speech.Audio, speech.SampleRateHertz, speech.AudioDurationSeconds, *text)
	}

	ctx, cancel = call()
	parts, err := client.SynthesizeStream(ctx, &speechv1.StreamingSynthesizeRequest{Text: *text, Voice: *voice, AudioConfig: linear16})
	cancel()
	check(err == nil, "StreamingSynthesize: %v", err)
	var joined []byte
	var rate int32
	var reported float32
	for i, part := range parts {
		check(len(part.Audio) > 0, "StreamingSynthesize: part %d has no audio", i)
		check(int(part.SentenceIndex) == i, "StreamingSynthesize: part %d has index %d", i, part.SentenceIndex)
		joined = append(joined, part.Audio...)
		rate = part.SampleRateHertz
		reported += part.AudioDurationSeconds
	}
	r.StreamingSynthesize = map[string]interface{}{
		"parts": len(parts), "bytes": len(joined), "seconds": pcmSeconds(joined, rate),
	}
	check(len(parts) >= 2, "StreamingSynthesize: %d parts for a text of two sentences", len(parts))
	checkPCM(check, "StreamingSynthesize", joined, rate, reported, *text)

	out, _ := json.MarshalIndent(r, "", "  ")
	fmt.Println(string(out))
	if len(r.Failures) > 0 {
		os.Exit(1)
	}
}

func containsAll(text string, words []string) bool {
	lower := strings.ToLower(text)
	for _, word := range words {
		if word != "" && !strings.Contains(lower, word) {
			return false
		}
	}
	return true
}

func pcmSeconds(pcm []byte, rate int32) float64 {
	if rate <= 0 {
		return 0
	}
	return float64(len(pcm)) / 2 / float64(rate)
}

// checkPCM: non-empty 16-bit samples whose length matches the duration the server
// reported, and a duration plausible for the text (30 to 200 ms per character).
func checkPCM(check func(bool, string, ...interface{}), what string, pcm []byte, rate int32, reported float32, text string) {
	seconds := pcmSeconds(pcm, rate)
	check(len(pcm) > 0 && len(pcm)%2 == 0, "%s: %d bytes is not 16-bit PCM", what, len(pcm))
	check(math.Abs(seconds-float64(reported)) < 0.05, "%s: %.3f s of samples, %.3f s reported", what, seconds, reported)
	chars := float64(len(text))
	check(seconds > 0.03*chars && seconds < 0.2*chars, "%s: %.2f s for %d characters", what, seconds, len(text))
}
