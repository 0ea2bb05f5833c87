"""Fly the satellite with tmtccmd (https://github.com/robamu-org/tmtccmd), a widely used
third-party PUS ground stack, through ``flight ground gateway``: its TCP client, spacepackets'
PUS-C TCs and its PUS verificator, and the numbers of docs/icd.md; nothing of rackflight.

    python3 -m venv ~/tmtc && ~/tmtc/bin/pip install 'tmtccmd~=8.2'
    ~/tmtc/bin/python docs/examples/tmtccmd_client.py 127.0.0.1 52100 30

Sends TC[17,1] (are-you-alive) and TC[8,1] thermal.set_setpoint(setpoint_c) and prints
every TM[1,x] as the verificator sees it, the TM[17,2] and the thermal TM[3,25]/TM[5,x].
"""

import struct
import sys
import time

from spacepackets.ccsds.spacepacket import PacketId, PacketType
from spacepackets.ecss import PusTc, PusTm, PusVerificator
from spacepackets.ecss.pus_1_verification import Service1Tm, UnpackParams
from tmtccmd.com.tcp import TcpSpacepacketsClient
from tmtccmd.com.tcpip_utils import EthAddr

TC_APID, THERMAL_APID, GATEWAY_APID = 4, 3, 0x7F0  # docs/icd.md: APIDs
SET_SETPOINT = 0x0301  # docs/icd.md: function id of thermal.set_setpoint, then setpoint_c f64
TIME_FIELD_LEN = 7  # docs/icd.md: P-field 0x40 + 6-byte CDS T-field
FAILURE_CODES = {1: "INVALID_OPCODE", 2: "VALIDATION_ERROR", 3: "FORMAT_ERROR", 4: "EXECUTION_ERROR", 5: "BUSY",
                 128: "AUTHENTICATION_ERROR"}
SOURCE_ID = 0x7E57

host, port, setpoint_c = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
apids = (1, 2, 3, 4, 5, 6, GATEWAY_APID)
com = TcpSpacepacketsClient("gateway", [PacketId(PacketType.TM, True, apid) for apid in apids], 0.05,
                            EthAddr(host, port))
com.open()
verificator = PusVerificator()
tcs = [PusTc(17, 1, apid=TC_APID, seq_count=1, source_id=SOURCE_ID),
       PusTc(8, 1, apid=TC_APID, app_data=struct.pack(">Hd", SET_SETPOINT, setpoint_c), seq_count=2,
             source_id=SOURCE_ID)]
time.sleep(0.5)  # tmtccmd's TCP thread connects
for tc in tcs:
    verificator.add_tc(tc)
    com.send(tc.pack())
    print(f"sent TC[{tc.service},{tc.subservice}] request id 0x{tc.packet_id.raw():04x}{tc.packet_seq_control.raw():04x}")
deadline = time.monotonic() + 10
while time.monotonic() < deadline and not all(s.all_verifs_recvd for s in verificator.verif_dict.values()):
    for raw in com.receive():
        tm = PusTm.unpack(raw, TIME_FIELD_LEN)
        if tm.service == 1:
            report = Service1Tm.unpack(raw, UnpackParams(TIME_FIELD_LEN, 1, 1))
            result = verificator.add_tm(report)
            failure = ""
            if report.has_failure_notice:
                notice = report.failure_notice
                failure = f" {FAILURE_CODES.get(notice.code.val, notice.code.val)}: {notice.data.decode()}"
            print(f"TM[1,{tm.subservice}] from APID {tm.apid} seq {tm.seq_count} about 0x{report.tc_req_id.as_u32():08x}"
                  f"{failure}; verificator: {'done' if result and result.status.all_verifs_recvd else 'waiting'}")
        elif tm.service == 17:
            print(f"TM[17,2] from APID {tm.apid} seq {tm.seq_count}")
        elif tm.apid == THERMAL_APID and tm.service == 3:
            sid, value = struct.unpack_from(">Hd", tm.source_data)
            print(f"TM[3,25] thermal sid {sid}: setpoint_c {value}")
        elif tm.apid == THERMAL_APID and tm.service == 5:
            (length,) = struct.unpack_from(">H", tm.source_data, 2)
            print(f"TM[5,{tm.subservice}] thermal: {tm.source_data[4:4 + length].decode()}")
    time.sleep(0.05)
com.close()
