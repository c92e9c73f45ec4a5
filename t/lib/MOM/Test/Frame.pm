package MOM::Test::Frame;

# The local frame protocol (proto/mom.proto, docs/architecture.md) spoken
# from Perl, to test momd without nginx: a hand-written protobuf encoder
# for mom.Request and decoder for mom.Response (both are flat messages of
# varints and length-delimited fields), and a client on momd's Unix socket.
#
#   my $c = MOM::Test::Frame->new($socket_path);
#   $c->request(op => "OP_LIST_TOPICS");
#   my $resp = $c->response(timeout => 2);   # {kind, status, body, user, id}
#   $c->pipeline({op => "OP_LIST_TOPICS", id => 1}, ...);  # one write
#   $c->send_raw(pack('N', 0));           # bad frames
#   $c->closed_by_peer(2);                # momd closed the connection

use strict;
use warnings;

use Exporter 'import';
use IO::Select;
use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM);
use Time::HiRes qw(time);

our %OP = (
    OP_NONE => 0, OP_REGISTER => 1, OP_LOGIN => 2, OP_LIST_USERS => 3,
    OP_LIST_TOPICS => 4, OP_CREATE_TOPIC => 5, OP_DELETE_TOPIC => 6,
    OP_PUBLISH => 7, OP_HISTORY => 8, OP_SUBSCRIBE => 9,
    OP_LIST_QUEUES => 10, OP_CREATE_QUEUE => 11, OP_DELETE_QUEUE => 12,
    OP_SEND => 13, OP_RECEIVE => 14, OP_CANCEL => 15, OP_MUTE => 16,
);
our %KIND = (0 => 'REPLY', 1 => 'EVENT', 2 => 'END');

# Field numbers and wire types of mom.Request.
my %REQ = (
    op => [1, 'varint'], user => [2, 'bytes'], name => [3, 'bytes'],
    password => [4, 'bytes'], content => [5, 'bytes'],
    since => [6, 'varint'], has_since => [7, 'varint'],
    limit => [8, 'varint'], token_exp => [9, 'varint'],
    heartbeat_ms => [10, 'varint'], id => [14, 'varint'],
);
my %RESP = (1 => 'kind', 2 => 'status', 3 => 'body', 4 => 'user',
            8 => 'id', 9 => 'stream_buffer');

sub varint {
    my ($n) = @_;
    # int64 negatives are 10-byte two's complement; tests use n >= 0.
    my $out = '';
    while ($n >= 0x80) {
        $out .= chr(($n & 0x7f) | 0x80);
        $n = int($n / 128);
    }
    return $out . chr($n);
}

sub encode_request {
    my (%f) = @_;
    $f{op} = $OP{$f{op}} if defined $f{op} && exists $OP{$f{op}};
    my $out = '';
    for my $k (sort { $REQ{$a}[0] <=> $REQ{$b}[0] } keys %f) {
        my $spec = $REQ{$k} or die "unknown Request field $k\n";
        my ($num, $type) = @$spec;
        my $v = $f{$k};
        if ($type eq 'varint') {
            $out .= varint($num << 3) . varint($v);
        } else {
            utf8::encode($v) if utf8::is_utf8($v);
            $out .= varint(($num << 3) | 2) . varint(length $v) . $v;
        }
    }
    return $out;
}

sub read_varint {
    my ($buf, $pos) = @_;
    my ($n, $shift) = (0, 0);
    while (1) {
        die "truncated varint\n" if $$pos >= length $$buf;
        my $b = ord substr $$buf, $$pos++, 1;
        $n += ($b & 0x7f) * 2**$shift;
        return $n unless $b & 0x80;
        $shift += 7;
    }
}

sub decode_response {
    my ($bytes) = @_;
    my %r = (kind => 0, status => 0, body => '', user => '', id => 0);
    my $pos = 0;
    while ($pos < length $bytes) {
        my $key = read_varint(\$bytes, \$pos);
        my ($num, $type) = ($key >> 3, $key & 7);
        my $name = $RESP{$num} // "field$num";
        if ($type == 0) {
            $r{$name} = read_varint(\$bytes, \$pos);
        } elsif ($type == 2) {
            my $len = read_varint(\$bytes, \$pos);
            $r{$name} = substr $bytes, $pos, $len;
            $pos += $len;
        } else {
            die "unexpected wire type $type\n";
        }
    }
    $r{kind_name} = $KIND{$r{kind}} // "KIND$r{kind}";
    return \%r;
}

sub frame { pack('N', length $_[0]) . $_[0] }

# --- client ------------------------------------------------------------------

sub new {
    my ($class, $path) = @_;
    my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $path)
        or return undef;
    $s->blocking(0);
    return bless {s => $s, buf => '', sel => IO::Select->new($s),
                  eof => 0}, $class;
}

sub request {
    my ($self, %f) = @_;
    return $self->send_raw(frame(encode_request(%f)));
}

# pipeline({op => ..., id => 1}, {...}, ...): all the requests in one write.
sub pipeline {
    my ($self, @reqs) = @_;
    return $self->send_raw(join '', map { frame(encode_request(%$_)) } @reqs);
}

sub send_raw {
    my ($self, $bytes) = @_;
    local $SIG{PIPE} = 'IGNORE';
    my $off = 0;
    my $deadline = time + 5;
    while ($off < length $bytes && time < $deadline) {
        my $n = syswrite $self->{s}, $bytes, length($bytes) - $off, $off;
        if (!defined $n) {
            return 0 unless $!{EAGAIN};
            IO::Select->new($self->{s})->can_write(0.1);
            next;
        }
        $off += $n;
    }
    return $off == length $bytes;
}

sub _fill {
    my ($self, $timeout) = @_;
    return 0 if $self->{eof};
    return 0 unless $self->{sel}->can_read($timeout > 0 ? $timeout : 0);
    my $n = sysread $self->{s}, $self->{buf}, 65536, length $self->{buf};
    return 1 if !defined $n && $!{EAGAIN};
    $self->{eof} = 1 unless $n;
    return $n ? 1 : 0;
}

# response(timeout => s): the next Response (decoded), or undef.
sub response {
    my ($self, %o) = @_;
    my $deadline = time + ($o{timeout} // 5);
    while (1) {
        if (length $self->{buf} >= 4) {
            my $len = unpack 'N', $self->{buf};
            if (length $self->{buf} >= 4 + $len) {
                my $msg = substr $self->{buf}, 4, $len;
                substr($self->{buf}, 0, 4 + $len) = '';
                return decode_response($msg);
            }
        }
        my $left = $deadline - time;
        return undef if $left <= 0;
        $self->_fill($left) or ($self->{eof} and return undef);
    }
}

# responses_for(s): every Response that arrives within s seconds.
sub responses_for {
    my ($self, $seconds) = @_;
    my (@got, $r);
    my $deadline = time + $seconds;
    while (time < $deadline) {
        $r = $self->response(timeout => $deadline - time) // last;
        push @got, $r;
    }
    return @got;
}

# end(timeout => s): the stream's END Response, skipping what comes
# before it; undef if none comes in time.
sub end {
    my ($self, %o) = @_;
    my $deadline = time + ($o{timeout} // 5);
    while (my $r = $self->response(timeout => $deadline - time)) {
        return $r if $r->{kind_name} eq 'END';
    }
    return undef;
}

# closed_by_peer(timeout): momd closed this connection (EOF) in time.
sub closed_by_peer {
    my ($self, $timeout) = @_;
    my $deadline = time + $timeout;
    while (!$self->{eof} && time < $deadline) {
        $self->_fill($deadline - time);
        $self->{buf} = '';
    }
    return $self->{eof};
}

sub disconnect { close $_[0]{s} }

1;
