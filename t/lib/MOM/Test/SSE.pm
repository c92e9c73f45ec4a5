package MOM::Test::SSE;

# A Server-Sent Events client for the tests: a raw socket, the request
# written by hand, the response read incrementally (chunked or not) and cut
# into events, each stamped with the time its last byte arrived, so that
# tests can check both content and timing (live delivery, heartbeats,
# disconnects).
#
#   my $s = MOM::Test::SSE->new(port => $p, path => '/messages/...',
#                                headers => {Accept => 'text/event-stream'});
#   $s->status;                     # 200; $s->header('content-type')
#   my $ev = $s->next_block(timeout => 5);  # any block: data event, comment
#   my @evs = $s->data_events(10, timeout => 5);   # skips comments/retry
#   $s->closed;                     # the server ended the stream
#   $s->disconnect;
#
# An event is {id, event, data, json (data decoded), retry, comments
# [text...], t (epoch seconds, fractional), raw}.

use strict;
use warnings;

use IO::Select;
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_RCVBUF pack_sockaddr_in inet_aton);
use JSON::PP;
use Time::HiRes qw(time);

my $JSON = JSON::PP->new->utf8->allow_nonref;

sub new {
    my ($class, %o) = @_;
    my $self = bless {
        buf => '', body => '', events => [], closed => 0,
        chunked => 0, chunk_left => 0, head_done => 0,
    }, $class;
    # rcvbuf: a small receive buffer makes a client that stops reading
    # push back on the server quickly (the slow-subscriber test).
    my $sock = IO::Socket::INET->new(Proto => 'tcp');
    setsockopt($sock, SOL_SOCKET, SO_RCVBUF, $o{rcvbuf}) if $o{rcvbuf};
    my $addr = pack_sockaddr_in($o{port}, inet_aton('127.0.0.1'));
    unless ($sock->connect($addr)) {
        $self->{error} = "connect: $!";
        $self->{closed} = 1;
        return $self;
    }
    $self->{sock} = $sock;
    $self->{sock}->blocking(0);
    $self->{sel} = IO::Select->new($self->{sock});
    my $req = "GET $o{path} HTTP/1.1\r\nHost: 127.0.0.1:$o{port}\r\n";
    my %h = %{$o{headers} // {}};
    $req .= "$_: $h{$_}\r\n" for sort keys %h;
    $req .= "\r\n";
    $self->{sock}->blocking(1);
    syswrite $self->{sock}, $req;
    $self->{sock}->blocking(0);
    $self->{t_open} = time;
    $self->_read_head($o{timeout} // 10);
    return $self;
}

sub status  { $_[0]{status} // 599 }
sub header  { $_[0]{headers}{lc $_[1]} }
sub headers { $_[0]{headers} // {} }
sub closed  { $_[0]{closed} || $_[0]{last_chunk} }
sub error   { $_[0]{error} }
sub sock    { $_[0]{sock} }

# The body of a non-200 answer (a JSON error), read to its end.
sub body {
    my ($self, %o) = @_;
    my $deadline = time + ($o{timeout} // 5);
    $self->_pump($deadline - time)
        while !$self->closed && !$self->_body_complete && time < $deadline;
    return $self->{body};
}

sub json { my $b = $_[0]->body; eval { $JSON->decode($b) } }

sub _body_complete {
    my ($self) = @_;
    my $cl = $self->{headers}{'content-length'};
    return defined $cl && length $self->{body} >= $cl;
}

sub disconnect {
    my ($self) = @_;
    close $self->{sock} if $self->{sock};
    $self->{closed} = 1;
}

sub _read_head {
    my ($self, $timeout) = @_;
    my $deadline = time + $timeout;
    while (!$self->{head_done} && !$self->{closed} && time < $deadline) {
        $self->_fill($deadline - time) or last;
        if ($self->{buf} =~ s/^(.*?)\r\n\r\n//s) {
            my $head = $1;
            $head =~ m{^HTTP/1\.[01] (\d{3})} or do {
                $self->{error} = "bad status line"; last;
            };
            $self->{status} = $1;
            for (split /\r\n/, $head) {
                $self->{headers}{lc $1} = $2 if /^([^:]+):\s*(.*)$/;
            }
            $self->{chunked} =
                ($self->{headers}{'transfer-encoding'} // '') =~ /chunked/i;
            $self->{head_done} = 1;
            $self->_decode;
        }
    }
}

# _fill(timeout): read what is available into buf; false on EOF/timeout.
sub _fill {
    my ($self, $timeout) = @_;
    return 0 if $self->{closed};
    $timeout = 0 if $timeout < 0;
    return 0 unless $self->{sel}->can_read($timeout);
    my $n = sysread $self->{sock}, $self->{buf}, 65536, length $self->{buf};
    if (!defined $n) {
        return 1 if $!{EAGAIN} || $!{EWOULDBLOCK};
        $self->{error} = "read: $!";
    }
    if (!$n) {
        $self->{closed} = 1;
        $self->{t_closed} = time;
        $self->_decode;
        return 0;
    }
    return 1;
}

# Move decoded body bytes from buf to body (undoing chunked framing), then
# cut complete events out of the body.
sub _decode {
    my ($self) = @_;
    return unless $self->{head_done};
    if (!$self->{chunked}) {
        $self->{body} .= $self->{buf};
        $self->{buf} = '';
    } else {
        while (length $self->{buf}) {
            if ($self->{chunk_left} > 0) {
                my $take = substr $self->{buf}, 0, $self->{chunk_left}, '';
                $self->{body} .= $take;
                $self->{chunk_left} -= length $take;
                next;
            }
            if ($self->{need_crlf}) {
                last if length $self->{buf} < 2;
                substr $self->{buf}, 0, 2, '';
                $self->{need_crlf} = 0;
                next;
            }
            last unless $self->{buf} =~ s/^([0-9a-fA-F]+)[^\r]*\r\n//;
            my $size = hex $1;
            if ($size == 0) {
                $self->{last_chunk} = 1;
                $self->{t_closed} //= time;
                $self->{buf} = '';
                last;
            }
            $self->{chunk_left} = $size;
            $self->{need_crlf} = 1;
        }
    }
    return if $self->{status} && $self->{status} != 200;
    my $now = time;
    while ($self->{body} =~ s/^(.*?)(?:\r\n|\r|\n)(?:\r\n|\r|\n)//s) {
        push @{$self->{events}}, parse_event($1, $now);
    }
}

sub parse_event {
    my ($block, $t) = @_;
    my %ev = (t => $t, raw => $block, comments => []);
    my @data;
    for my $line (split /\r\n|\r|\n/, $block) {
        if ($line =~ /^:\s?(.*)$/) {
            push @{$ev{comments}}, $1;
            next;
        }
        my ($f, $v) = $line =~ /^([^:]*)(?::\s?(.*))?$/;
        $v //= '';
        if ($f eq 'data') { push @data, $v }
        elsif ($f eq 'id') { $ev{id} = $v }
        elsif ($f eq 'event') { $ev{event} = $v }
        elsif ($f eq 'retry') { $ev{retry} = $v }
        else { push @{$ev{unknown}}, $line }
    }
    if (@data) {
        $ev{data} = join "\n", @data;
        $ev{json} = eval { $JSON->decode($ev{data}) };
    }
    return \%ev;
}

sub _pump {
    my ($self, $timeout) = @_;
    my $got = $self->_fill($timeout);
    $self->_decode;
    return $got;
}

# next_block(timeout => s): the next block (event, comment, retry), or undef.
sub next_block {
    my ($self, %o) = @_;
    my $deadline = time + ($o{timeout} // 5);
    while (!@{$self->{events}}) {
        return undef if $self->closed || time >= $deadline;
        $self->_pump($deadline - time);
    }
    return shift @{$self->{events}};
}

# next_data(timeout => s): the next block carrying data (skips comments,
# heartbeats and retry hints), or undef.
sub next_data {
    my ($self, %o) = @_;
    my $deadline = time + ($o{timeout} // 5);
    while (1) {
        my $ev = $self->next_block(timeout => $deadline - time) // return undef;
        return $ev if defined $ev->{data};
        push @{$self->{skipped}}, $ev;
    }
}

# data_events(n, timeout => s): up to n data events within the time.
sub data_events {
    my ($self, $n, %o) = @_;
    my $deadline = time + ($o{timeout} // 5);
    my @evs;
    while (@evs < $n) {
        my $ev = $self->next_data(timeout => $deadline - time) // last;
        push @evs, $ev;
    }
    return @evs;
}

# events_until_end(n, timeout => s): up to n events with an id, stopping at
# an `end` event; returns (the events, the end event or undef). Each block
# waits up to the timeout.
sub events_until_end {
    my ($self, $n, %o) = @_;
    my (@seen, $end);
    while (@seen < $n) {
        my $b = $self->next_block(timeout => $o{timeout} // 10) // last;
        if (($b->{event} // '') eq 'end') { $end = $b; last }
        push @seen, $b if defined $b->{id};
    }
    return (\@seen, $end);
}

# Non-data blocks skipped by next_data (retry, heartbeats).
sub skipped { @{$_[0]{skipped} // []} }

# wait_closed(timeout): true when the server closed the stream in time.
sub wait_closed {
    my ($self, $timeout) = @_;
    my $deadline = time + $timeout;
    $self->_pump($deadline - time) while !$self->closed && time < $deadline;
    return $self->closed;
}

sub pending_events { @{$_[0]{events}} }

# dechunk_all(body): a complete chunked body, decoded.
sub dechunk_all {
    my ($in) = @_;
    my $out = '';
    while ($in =~ s/^([0-9a-fA-F]+)[^\r]*\r\n//) {
        my $n = hex $1;
        last if $n == 0;
        $out .= substr $in, 0, $n, '';
        $in =~ s/^\r\n//;
    }
    return $out;
}

1;
