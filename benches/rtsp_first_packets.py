#!/usr/bin/env python3
"""Receive-only RTSP probe: N cameras of one server (rtsp://127.0.0.1:PORT/camI), all connected at
once over interleaved TCP, each read as fast as it arrives for SECS seconds after PLAY. Prints, for
the 10 latest cameras, when PLAY was answered and when each stream's first RTP packet came (seconds
after the DESCRIBE was sent), and each stream's longest silence. What a camera server itself does
under a burst of clients, with no recorder in the way (docs/performance.md, start-up gaps).
Usage: benches/rtsp_first_packets.py PORT N SECS   (e.g. beside `witness simulate --looped --cameras 64`)
"""
import asyncio, sys, time, re
HOST='127.0.0.1'; PORT=int(sys.argv[1]); N=int(sys.argv[2]); SECS=float(sys.argv[3]); TOP=10
async def req(r,w,lines,cseq):
    w.write(("\r\n".join(lines+[f"CSeq: {cseq}","",""])).encode()); await w.drain()
    hdr=b""
    while b"\r\n\r\n" not in hdr:
        b=await r.read(1)
        if b==b"$": raise Exception("interleaved before reply")
        hdr+=b
    h=hdr.decode(); m=re.search(r"Content-Length: *(\d+)",h,re.I)
    body=(await r.readexactly(int(m.group(1)))).decode() if m else ""
    return h,body
async def camera(i, res):
    url=f"rtsp://{HOST}:{PORT}/cam{i}"
    r,w=await asyncio.open_connection(HOST,PORT)
    tdesc=time.monotonic()
    h,sdp=await req(r,w,[f"DESCRIBE {url} RTSP/1.0","Accept: application/sdp"],1)
    base=re.search(r"Content-Base: *(\S+)",h,re.I); base=base.group(1) if base else url+"/"
    ctrls=re.findall(r"m=(\w+).*?a=control:(\S+)",sdp,re.S)
    sess=None; kinds={}
    for k,(media,ctrl) in enumerate(ctrls):
        u=ctrl if ctrl.startswith("rtsp") else base.rstrip("/")+"/"+ctrl
        lines=[f"SETUP {u} RTSP/1.0",f"Transport: RTP/AVP/TCP;unicast;interleaved={2*k}-{2*k+1}"]+([f"Session: {sess}"] if sess else [])
        h,_=await req(r,w,lines,2+k); sess=re.search(r"Session: *([^;\r\n]+)",h).group(1); kinds[2*k]=media
    await req(r,w,[f"PLAY {url} RTSP/1.0",f"Session: {sess}","Range: npt=0-"],9)
    tplay=time.monotonic(); first={}; last={}; maxgap={}; first['play']=tplay-tdesc
    while time.monotonic()<tplay+SECS:
        b=await r.readexactly(1)
        if b!=b"$": continue
        hd=await r.readexactly(3); ch=hd[0]; ln=(hd[1]<<8)|hd[2]
        await r.readexactly(ln)
        if ch in kinds:
            now=time.monotonic()-tdesc; k=kinds[ch]
            first.setdefault(k,now)
            if k in last: maxgap[k]=max(maxgap.get(k,0),now-last[k])
            last[k]=now
    w.close()
    res[i]=(first,maxgap)
async def main():
    res={}
    await asyncio.gather(*[camera(i, res) for i in range(1,N+1)])
    rows=sorted(res.items(), key=lambda kv: -max(kv[1][0].values() or [0]))
    for i,(first,maxgap) in rows[:TOP]:
        print(f"cam{i}: first " + " ".join(f"{k}={v:.2f}s" for k,v in first.items()) + " | longest silence " + " ".join(f"{k}={v:.2f}s" for k,v in maxgap.items()))
asyncio.run(main())
