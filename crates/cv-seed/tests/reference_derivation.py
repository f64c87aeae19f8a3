"""An independent implementation of cv-seed's documented derivation (FNV-1a names, SplitMix64
mixing, a from-scratch ChaCha8 block function), written from the crate docs alone. It printed the
values pinned in `src/lib.rs`'s tests: `python3 crates/cv-seed/tests/reference_derivation.py`.
"""
M=(1<<64)-1
G=0x9E3779B97F4A7C15
def mix(z):
    z=((z^(z>>30))*0xBF58476D1CE4E5B9)&M
    z=((z^(z>>27))*0x94D049BB133111EB)&M
    return z^(z>>31)
def fnv(b):
    h=0xcbf29ce484222325
    for c in b: h=((h^c)*0x100000001b3)&M
    return h
def child(s,name): return mix(s^mix((fnv(name.encode())+G)&M))
def path(s,p):
    for part in p.split('/'): s=child(s,part)
    return s
def key(seed):
    st=seed; out=b''
    for _ in range(4):
        st=(st+G)&M; out+=mix(st).to_bytes(8,'little')
    return out
def rotl(v,c): return ((v<<c)&0xffffffff)|(v>>(32-c))
def qr(x,a,b,c,d):
    x[a]=(x[a]+x[b])&0xffffffff; x[d]=rotl(x[d]^x[a],16)
    x[c]=(x[c]+x[d])&0xffffffff; x[b]=rotl(x[b]^x[c],12)
    x[a]=(x[a]+x[b])&0xffffffff; x[d]=rotl(x[d]^x[a],8)
    x[c]=(x[c]+x[d])&0xffffffff; x[b]=rotl(x[b]^x[c],7)
def block(k,counter,rounds=8):
    import struct
    st=[0x61707865,0x3320646e,0x79622d32,0x6b206574]+list(struct.unpack('<8I',k))+[counter&0xffffffff,counter>>32,0,0]
    x=st[:]
    for _ in range(rounds//2):
        qr(x,0,4,8,12);qr(x,1,5,9,13);qr(x,2,6,10,14);qr(x,3,7,11,15)
        qr(x,0,5,10,15);qr(x,1,6,11,12);qr(x,2,7,8,13);qr(x,3,4,9,14)
    return [(a+b)&0xffffffff for a,b in zip(x,st)]
def words(seed,n):
    k=key(seed); out=[]; c=0
    while len(out)<n: out+=block(k,c); c+=1
    return out[:n]
init=child(42,'init')
print('INIT',init)
print('ORDER',path(42,'data-order/fold 3/epoch 7'))
print('AUG',path(42,'augment/fold 3/epoch 7/sample 1234'))
w=words(init,4); print('STREAM',[w[0]|(w[1]<<32), w[2]|(w[3]<<32)])
print('ROOT0',words(0,1)[0])
