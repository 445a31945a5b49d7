package speechclient

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// WAV is the PCM of a RIFF/WAVE file: what StreamingTranscribe takes as LINEAR16.
type WAV struct {
	PCM        []byte // 16-bit little-endian samples
	SampleRate int
	Channels   int
}

// ReadWAV reads a 16-bit PCM WAV file (the server's streaming RPC takes raw samples, not
// containers, so a client strips the header itself).
func ReadWAV(path string) (WAV, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return WAV{}, err
	}
	if len(data) < 12 || string(data[0:4]) != "RIFF" || string(data[8:12]) != "WAVE" {
		return WAV{}, fmt.Errorf("%s: not a RIFF/WAVE file", path)
	}
	var wav WAV
	bits := 0
	for offset := 12; offset+8 <= len(data); {
		id := string(data[offset : offset+4])
		size := int(binary.LittleEndian.Uint32(data[offset+4 : offset+8]))
		body := offset + 8
		if body+size > len(data) {
			size = len(data) - body
		}
		switch id {
		case "fmt ":
			if size < 16 {
				return WAV{}, fmt.Errorf("%s: short fmt chunk", path)
			}
			wav.Channels = int(binary.LittleEndian.Uint16(data[body+2:]))
			wav.SampleRate = int(binary.LittleEndian.Uint32(data[body+4:]))
			bits = int(binary.LittleEndian.Uint16(data[body+14:]))
		case "data":
			wav.PCM = data[body : body+size]
		}
		offset = body + size + size%2
	}
	if bits != 16 || wav.PCM == nil {
		return WAV{}, errors.New(path + ": needs 16-bit PCM with a data chunk")
	}
	return wav, nil
}
