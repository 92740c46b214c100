package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// leanStream is a device stream read without net/http's client transport:
// one socket, http.ReadResponse for the status and chunking, and a line
// scan for the data field. The fan-out bench runs thousands of them on the
// gateway's own two cores, so the client's cost must stay small.
type leanStream struct {
	conn net.Conn
	body *bufio.Reader
}

func (r *rig) openLean(ctx context.Context, d dev) (*leanStream, error) {
	var dialer net.Dialer
	addr := strings.TrimPrefix(r.base, "http://")
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	req, _ := http.NewRequest("GET", r.base+"/v1/devices/"+d.id+"/streams/news", nil)
	req.Header.Set("Authorization", "Bearer "+d.token)
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, fmt.Errorf("open: %d", resp.StatusCode)
	}
	return &leanStream{conn: conn, body: bufio.NewReaderSize(resp.Body, 4096)}, nil
}

// nextStamp returns the send time carried in the next event's data.
func (s *leanStream) nextStamp() (time.Time, error) {
	for {
		line, err := s.body.ReadSlice('\n')
		if err != nil {
			return time.Time{}, err
		}
		if v, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
			ns, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				return time.Time{}, err
			}
			return time.Unix(0, ns), nil
		}
	}
}

func (s *leanStream) Close() error { return s.conn.Close() }
