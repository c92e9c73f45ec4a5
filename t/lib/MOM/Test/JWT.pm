package MOM::Test::JWT;

# Crafting JSON Web Tokens in Perl for the tests, independently of the
# module's libjwt: HS256/384/512 with Digest::SHA, RS256 and ES256 through
# the openssl CLI, "none" unsigned. The header and payload can be anything,
# so that invalid tokens (wrong alg, missing claims, tampered parts) are as
# easy to make as valid ones.
#
#   make_jwt('HS256', $secret, {sub => 'alice', exp => time + 60});
#   make_jwt('RS256', '/path/key.pem', \%claims, {kid => 'x'});
#   make_jwt('HS256', $rsa_public_pem_text, \%claims, {alg => 'HS256'});

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256 hmac_sha384 hmac_sha512);
use Exporter 'import';
use File::Temp qw(tempfile);
use JSON::PP;
use MIME::Base64 qw(encode_base64url decode_base64url);

our @EXPORT_OK = qw(make_jwt jwt_parts b64url);

my $JSON = JSON::PP->new->utf8->canonical;

sub b64url { encode_base64url($_[0]) }

# make_jwt(alg, key, claims, header_overrides): sign with `alg` (HS*: key
# is the secret string; RS256/ES256: key is a private key PEM file; none:
# no signature). header_overrides are merged into {alg, typ}: they may
# claim another alg than the one used to sign. A claims string is used as
# the payload verbatim.
sub make_jwt {
    my ($alg, $key, $claims, $header) = @_;
    my %h = (alg => $alg, typ => 'JWT', %{$header // {}});
    my $payload = ref $claims ? $JSON->encode($claims) : $claims;
    my $input = b64url($JSON->encode(\%h)) . '.' . b64url($payload);
    return "$input." . b64url(sign($alg, $key, $input));
}

sub sign {
    my ($alg, $key, $input) = @_;
    return '' if $alg eq 'none';
    return hmac_sha256($input, $key) if $alg eq 'HS256';
    return hmac_sha384($input, $key) if $alg eq 'HS384';
    return hmac_sha512($input, $key) if $alg eq 'HS512';
    if ($alg eq 'RS256' || $alg eq 'ES256') {
        my $der = openssl_sign($key, $input);
        return $alg eq 'RS256' ? $der : ecdsa_der_to_raw($der, 32);
    }
    die "make_jwt: unsupported alg $alg\n";
}

sub openssl_sign {
    my ($keyfile, $input) = @_;
    my ($fh, $file) = tempfile(UNLINK => 1);
    binmode $fh;
    print $fh $input;
    close $fh;
    open my $out, '-|', 'openssl', 'dgst', '-sha256', '-binary',
        '-sign', $keyfile, $file or die "openssl: $!";
    binmode $out;
    local $/;
    my $sig = <$out>;
    close $out or die "openssl dgst -sign failed\n";
    unlink $file;
    return $sig;
}

# JWS wants ECDSA signatures as r||s, fixed width; openssl gives DER
# SEQUENCE { INTEGER r, INTEGER s }.
sub ecdsa_der_to_raw {
    my ($der, $width) = @_;
    my @b = unpack 'C*', $der;
    my $i = 0;
    die "ECDSA signature: not a SEQUENCE\n" unless $b[$i++] == 0x30;
    my $len = $b[$i++];
    $i += $len & 0x7f if $len & 0x80;
    my $raw = '';
    for (1 .. 2) {
        die "ECDSA signature: not an INTEGER\n" unless $b[$i++] == 0x02;
        my $n = $b[$i++];
        my $int = pack 'C*', @b[$i .. $i + $n - 1];
        $i += $n;
        $int =~ s/^\x00+//;
        $raw .= ("\x00" x ($width - length $int)) . $int;
    }
    return $raw;
}

# jwt_parts(token): (header hashref, claims hashref, signature bytes).
sub jwt_parts {
    my ($token) = @_;
    my ($h, $p, $s) = split /\./, $token, 3;
    return (eval { $JSON->decode(decode_base64url($h)) },
            eval { $JSON->decode(decode_base64url($p)) },
            decode_base64url($s // ''));
}

1;
