// Package speechclient is a small Go client for the speech platform's gRPC API.
//
// The message and service types come from speechv1, generated from protos/ by the build
// (python -m tools.clients.go); this package adds what every caller would otherwise write
// again: dialling with TLS and a bearer token, reading WAV files, and driving the two
// streaming RPCs to completion.
package speechclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	speechv1 "example.com/speech/gen/speech/v1"
)

// Options say where the server is and how to reach it.
type Options struct {
	Target string // host:port
	Token  string // bearer token sent as "authorization" metadata; empty sends none
	CAFile string // PEM roots that sign the server's certificate; empty means plaintext
	// CertFile and KeyFile: a client certificate for mutual TLS (both or neither).
	CertFile string
	KeyFile  string
}

// Client holds one connection and a stub for each service of speech.v1.
type Client struct {
	conn *grpc.ClientConn
	STT  speechv1.SpeechToTextClient
	TTS  speechv1.TextToSpeechClient
	Jobs speechv1.JobsClient
}

// bearer attaches the token to every call; it insists on TLS unless the channel is plaintext
// on purpose (tests, loopback).
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }

// Dial connects to opts.Target (lazily: the first call waits for the connection).
func Dial(opts Options) (*Client, error) {
	dialOptions := []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20)),
	}
	secure := opts.CAFile != ""
	if secure {
		config, err := tlsConfig(opts)
		if err != nil {
			return nil, err
		}
		dialOptions = append(dialOptions, grpc.WithTransportCredentials(credentials.NewTLS(config)))
	} else {
		dialOptions = append(dialOptions, grpc.WithInsecure())
	}
	if opts.Token != "" {
		dialOptions = append(dialOptions, grpc.WithPerRPCCredentials(bearer{opts.Token, secure}))
	}
	conn, err := grpc.Dial(opts.Target, dialOptions...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", opts.Target, err)
	}
	return &Client{
		conn: conn,
		STT:  speechv1.NewSpeechToTextClient(conn),
		TTS:  speechv1.NewTextToSpeechClient(conn),
		Jobs: speechv1.NewJobsClient(conn),
	}, nil
}

func tlsConfig(opts Options) (*tls.Config, error) {
	pem, err := os.ReadFile(opts.CAFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate found", opts.CAFile)
	}
	config := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if (opts.CertFile == "") != (opts.KeyFile == "") {
		return nil, errors.New("a client certificate needs both CertFile and KeyFile")
	}
	if opts.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(opts.CertFile, opts.KeyFile)
		if err != nil {
			return nil, err
		}
		config.Certificates = []tls.Certificate{pair}
	}
	return config, nil
}

// Close ends the connection.
func (c *Client) Close() error { return c.conn.Close() }

// TranscribeFile sends a whole recording (any container the server detects: WAV, FLAC,
// MP3, OGG/Opus) in one Transcribe call.
func (c *Client) TranscribeFile(ctx context.Context, path string) (*speechv1.TranscribeResponse, error) {
	audio, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return c.STT.Transcribe(ctx, &speechv1.TranscribeRequest{Audio: audio})
}

// StreamPCM sends 16-bit little-endian mono PCM in chunks of chunkBytes, as a microphone
// would (without waiting between chunks), and returns every result the server sent.
func (c *Client) StreamPCM(ctx context.Context, pcm []byte, rate, chunkBytes int) ([]*speechv1.StreamingTranscribeResponse, error) {
	stream, err := c.STT.StreamingTranscribe(ctx)
	if err != nil {
		return nil, err
	}
	config := &speechv1.StreamingRecognitionConfig{
		Config: &speechv1.RecognitionConfig{
			Encoding:        speechv1.AudioEncoding_AUDIO_ENCODING_LINEAR16,
			SampleRateHertz: int32(rate),
		},
		InterimResults: true,
	}
	sendErr := make(chan error, 1)
	go func() {
		sendErr <- sendAll(stream, config, pcm, chunkBytes)
	}()
	var results []*speechv1.StreamingTranscribeResponse
	for {
		response, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return results, err
		}
		results = append(results, response)
	}
	return results, <-sendErr
}

func sendAll(stream speechv1.SpeechToText_StreamingTranscribeClient, config *speechv1.StreamingRecognitionConfig, pcm []byte, chunkBytes int) error {
	first := &speechv1.StreamingTranscribeRequest{
		StreamingRequest: &speechv1.StreamingTranscribeRequest_StreamingConfig{StreamingConfig: config},
	}
	if err := stream.Send(first); err != nil {
		return err
	}
	for start := 0; start < len(pcm); start += chunkBytes {
		end := start + chunkBytes
		if end > len(pcm) {
			end = len(pcm)
		}
		chunk := &speechv1.StreamingTranscribeRequest{
			StreamingRequest: &speechv1.StreamingTranscribeRequest_AudioContent{AudioContent: pcm[start:end]},
		}
		if err := stream.Send(chunk); err != nil {
			return err
		}
	}
	return stream.CloseSend()
}

// SynthesizeStream collects every sentence StreamingSynthesize sends for request.
func (c *Client) SynthesizeStream(ctx context.Context, request *speechv1.StreamingSynthesizeRequest) ([]*speechv1.StreamingSynthesizeResponse, error) {
	stream, err := c.TTS.StreamingSynthesize(ctx, request)
	if err != nil {
		return nil, err
	}
	var parts []*speechv1.StreamingSynthesizeResponse
	for {
		part, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return parts, nil
		}
		if err != nil {
			return parts, err
		}
		parts = append(parts, part)
	}
}
